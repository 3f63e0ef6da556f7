# Library code as an input. Every script rule depends on the seqxai modules its script can
# import (common.smk track_library_code), through one fingerprint file per script: a changed
# module reruns this rule for the scripts that import it, and then exactly their rules. One
# input per job instead of one per module keeps the DAG of a 10,000-shard run small, and the
# files record which library code produced the results (module, SHA-256, bytes).
# The job is one bare interpreter start (standard library only; `python3 -S` from PATH, the
# command does not name an interpreter path so that a moved .venv changes no rule code): a `run:`
# rule would be re-spawned by Snakemake as a whole Snakemake process that parses the workflow
# again, ~5 s of CPU and ~12 s of wall time per fingerprint on 2 cores (26 per run).


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
    # standard library only: any env with a python3 serves (the data env, the lightest)
    conda:
        "../../envs/data.yaml"
    threads: 1
    params:
        program=FINGERPRINT_PROGRAM,
        root=FINGERPRINT_ROOT,
    shell:
        "python3 -S {params.program:q} {output:q} {log:q} {wildcards.script} {params.root:q} {input.modules:q}"
