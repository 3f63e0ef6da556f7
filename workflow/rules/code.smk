# Library code as an input. Every script rule depends on the seqxai modules its script can
# import (common.smk track_library_code), through one fingerprint file per script: a changed
# module reruns this rule for the scripts that import it, and then exactly their rules. One
# input per job instead of one per module keeps the DAG of a 10,000-shard run small, and the
# files record which library code produced the results (module, SHA-256, bytes).
# The rule runs inside the Snakemake process (`run:`, standard library only: no conda env, no
# interpreter start per script), so the ~25 fingerprints of a run cost milliseconds.


localrules:
    library_fingerprint,


rule library_fingerprint:
    input:
        modules=lambda wc: LIBRARY_BY_SCRIPT[wc.script],
    output:
        out("code/{script}.tsv"),
    log:
        out("logs/library_fingerprint_{script}.log"),
    wildcard_constraints:
        script=r"[A-Za-z0-9_]+",
    threads: 1
    run:
        fingerprint(input.modules, output[0], log[0], wildcards.script)
