"""Dataset adapters: each reads one raw dataset layout and yields utterances."""
