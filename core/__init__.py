"""What every stage of hcm shares, and nothing else: names, the registry, safe file writing,
JSON reading, device choice, progress bars, the workspace layout and the error -> exit code map.

``hcm.core`` imports the standard library and small third-party helpers only (rich); torch is
imported inside the one function that needs it, so the command line can answer ``--help``
without loading it.
"""
