"""Synthetic corpora in the real raw layouts of MOSEI, MELD and IEMOCAP (``hcm sample``)."""
