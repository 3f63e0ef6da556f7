# seqxai: what did this protein or DNA transformer learn, and where does it look?
# Run:  snakemake --cores 4 --configfile config/demo.yaml      (offline demo)
#       snakemake --profile profiles/slurm                      (real study on SLURM)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/attribution.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/code.smk"


# Every script rule depends on the library modules its script imports (common.smk);
# keep this after the last include.
track_library_code()


rule all:
    default_target: True
    input:
        final_targets(),
