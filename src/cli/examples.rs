//! The examples at the end of each command's `--help`: people read the help of the command
//! they are about to run, so each shows two to four real command lines for it (and the exit
//! codes where a script acts on them).

/// `efs2atlas plan --help`.
pub const PLAN: &str = "\
Examples:
  efs2atlas plan --cluster goals-cluster --service goals-service --target-uri \"$EFS2ATLAS_ATLAS_URI\"
  efs2atlas plan --cluster goals-cluster --service goals-service --atlas-project 65a1b2c3d4e5f6a7b8c9d0e1 --atlas-cluster Cluster0
  efs2atlas plan --stage prod --json > plan.json

Exit codes: 0 the plan is ready to run, 2 usage error, 3 the plan has blockers (each says why).";

/// `efs2atlas migrate --help`.
pub const MIGRATE: &str = "\
Examples:
  efs2atlas migrate --cluster goals-cluster --service goals-service
  efs2atlas migrate --cluster goals-cluster --service goals-service --dry-run
  efs2atlas migrate --stage prod --yes --json > migration.json
  efs2atlas migrate --cluster goals-cluster --service goals-service --runner ecs --runner-image 123456789012.dkr.ecr.us-east-1.amazonaws.com/efs2atlas:0.1.0

Exit codes: 0 done, 1 failed, 2 usage error, 3 refused by a safety guard, 4 verification found
differences (nothing deployed), 5 interrupted (`efs2atlas resume` continues).";

/// `efs2atlas resume --help`.
pub const RESUME: &str = "\
Examples:
  efs2atlas resume
  efs2atlas resume --journal efs2atlas-prod.journal.json --yes

Exit codes: as `migrate` (0 done, 5 interrupted again: run it once more).";

/// `efs2atlas status --help`.
pub const STATUS: &str = "\
Examples:
  efs2atlas status
  efs2atlas status --journal efs2atlas-prod.journal.json --json";

/// `efs2atlas copy --help`.
pub const COPY: &str = "\
Examples:
  efs2atlas copy --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --db goals
  efs2atlas copy --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --ns-include 'goals.*' --ns-exclude 'goals.tmp_*' -j 8
  efs2atlas copy --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --db goals --target-db goals_test --drop

Run the same command again after an interruption (exit 5): it continues from its journal.";

/// `efs2atlas verify --help`.
pub const VERIFY: &str = "\
Examples:
  efs2atlas verify --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --db goals
  efs2atlas verify --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --json --max-examples 100

Exit codes: 0 the target equals the source, 4 differences found (listed), 1 failed.";

/// `efs2atlas sync --help`.
pub const SYNC: &str = "\
Examples:
  efs2atlas sync --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --db goals
  efs2atlas sync --source-uri \"$SOURCE_URI\" --target-uri \"$ATLAS_URI\" --json

Run it with the app's writes frozen; afterwards `efs2atlas verify` proves the two sides equal.";

/// `efs2atlas rollback --help`.
pub const ROLLBACK: &str = "\
Examples:
  efs2atlas rollback --cluster goals-cluster --service goals-service
  efs2atlas rollback --cluster goals-cluster --service goals-service --yes --json

Exit codes: 0 the service runs the old revision again, 3 refused (the EFS data is gone).";

/// `efs2atlas completions --help`.
pub const COMPLETIONS: &str = "\
Examples:
  efs2atlas completions bash > /etc/bash_completion.d/efs2atlas
  efs2atlas completions zsh > \"${fpath[1]}/_efs2atlas\"
  efs2atlas completions fish > ~/.config/fish/completions/efs2atlas.fish";

/// `efs2atlas man --help`.
pub const MAN: &str = "\
Examples:
  efs2atlas man > efs2atlas.1 && man ./efs2atlas.1
  efs2atlas man | gzip > /usr/local/share/man/man1/efs2atlas.1.gz";
