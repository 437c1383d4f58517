//! Whether this run is in a CI environment: its events then carry `is_ci = true`, and the
//! collector's insights leave them out by default, since test runs are not usage.
//!
//! The variables are the ones CI services set in every job (the list the `ci-info` npm
//! package and Homebrew check, in short). `ANONSTATS_IS_CI` decides when set: `1` or
//! `true` marks the run as CI, `0` or `false` as not CI (a product's own test suite that
//! runs in CI but wants its events counted, or a machine whose environment leaks `CI`).
//! `CI=false` (or `0`) says not CI, whatever else is set.

use std::ffi::OsString;

/// Variables whose presence (with a non-empty value) marks a CI job.
pub const VARIABLES: &[&str] = &[
    "CI",
    "CONTINUOUS_INTEGRATION",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "JENKINS_URL",
    "CIRCLECI",
    "TRAVIS",
    "TF_BUILD",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
    "CODEBUILD_BUILD_ARN",
    "DRONE",
    "SEMAPHORE",
    "BUILDKITE_BUILD_ID",
    "CIRRUS_CI",
    "WOODPECKER",
    "HUDSON_URL",
    "CI_NAME",
    "RUN_ID",
];

/// Variables that mark a CI job only together (Jenkins-style build ids; either alone is
/// set by too many other tools).
pub const TOGETHER: &[&str] = &["BUILD_ID", "BUILD_NUMBER"];

/// The variable that overrides detection.
pub const OVERRIDE: &str = "ANONSTATS_IS_CI";

/// True when `env` says this is a CI run (see the module's rules).
///
/// ```
/// let env = |name: &str| (name == "GITHUB_ACTIONS").then(|| "true".into());
/// assert!(anonstats_client::ci::detected(&env));
/// assert!(!anonstats_client::ci::detected(&|_: &str| None));
/// ```
pub fn detected(env: &dyn Fn(&str) -> Option<OsString>) -> bool {
    let value = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().trim().to_ascii_lowercase())
    };
    let no = |v: &str| v == "0" || v == "false";
    if let Some(v) = value(OVERRIDE) {
        return !no(&v);
    }
    if value("CI").is_some_and(|v| no(&v)) {
        return false;
    }
    VARIABLES.iter().any(|name| value(name).is_some())
        || TOGETHER.iter().all(|name| value(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(pairs: &[(&str, &str)]) -> bool {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        detected(&move |name: &str| map.get(name).cloned())
    }

    #[test]
    fn each_variable_marks_a_ci_run() {
        assert!(!with(&[]));
        for name in VARIABLES {
            assert!(with(&[(name, "1")]), "{name}");
            assert!(!with(&[(name, "")]), "{name} empty");
        }
    }

    #[test]
    fn build_id_and_build_number_count_only_together() {
        assert!(!with(&[("BUILD_ID", "7")]));
        assert!(!with(&[("BUILD_NUMBER", "7")]));
        assert!(with(&[("BUILD_ID", "7"), ("BUILD_NUMBER", "7")]));
    }

    #[test]
    fn ci_false_and_the_override_decide() {
        assert!(!with(&[("CI", "false"), ("GITHUB_ACTIONS", "true")]));
        assert!(!with(&[("CI", "0")]));
        assert!(with(&[("CI", "true")]));
        assert!(!with(&[("CI", "1"), ("ANONSTATS_IS_CI", "0")]));
        assert!(!with(&[
            ("GITLAB_CI", "true"),
            ("ANONSTATS_IS_CI", "false")
        ]));
        assert!(with(&[("ANONSTATS_IS_CI", "1")]));
        assert!(with(&[("CI", "false"), ("ANONSTATS_IS_CI", "true")]));
        // Empty says nothing.
        assert!(with(&[("CI", "1"), ("ANONSTATS_IS_CI", "")]));
    }
}
