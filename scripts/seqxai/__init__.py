"""seqxai: explain transformer models of biological sequences.

The library behind the Snakemake workflow. Modules are named after what they compute;
file reading and writing stays in :mod:`seqxai.io` and the rule scripts.
"""
__version__ = "0.1.0"
