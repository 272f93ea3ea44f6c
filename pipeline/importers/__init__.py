"""Importers: feature files of other frameworks -> an ordinary hcm feature cache.

``mmsa``: the MMSA framework's processed pickles (CMU-MOSI, CMU-MOSEI, CH-SIMS); see
docs/datasets.md.
"""
