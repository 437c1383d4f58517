//! `serve --config FILE`: settings from a TOML file, under flags and environment
//! variables. Each key is a `serve` option's long name (`listen`, `data-dir` or
//! `data_dir`, `retention-days`, ...). The commands that work on a store (`keys`,
//! `export`, `sql`, `erase`, `gen`, `backup`, `migrate`) take the same file, and use the
//! settings they share with `serve` (`data-dir`, `store`, `clickhouse-*`), so a data dir
//! set there is seen by all of them.

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use std::path::Path;

/// Whether the user set `id` on the command line or in the environment, at this level or
/// in a nested subcommand (where `keys`' global options land).
fn set_by_user(matches: &ArgMatches, id: &str) -> bool {
    let here = matches.ids().any(|i| i.as_str() == id)
        && !matches!(
            matches.value_source(id),
            None | Some(ValueSource::DefaultValue)
        );
    here || matches
        .subcommand()
        .is_some_and(|(_, sub)| set_by_user(sub, id))
}

/// The command line of `command` with the file's settings added for every option that
/// the command has and that neither a flag nor an environment variable set.
pub fn args_with_file(
    path: &Path,
    command: &str,
    matches: &ArgMatches,
) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let cli = crate::Cli::command();
    let longs = |name: &str| -> anyhow::Result<Vec<String>> {
        Ok(cli
            .find_subcommand(name)
            .with_context(|| format!("the {name} command is missing"))?
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "config")
            .map(str::to_string)
            .collect())
    };
    let known = longs("serve")?;
    let takes = longs(command)?;

    let mut args: Vec<String> = std::env::args().take(1).collect();
    args.push(command.into());
    for (key, value) in &table {
        let long = key.replace('_', "-");
        if !known.contains(&long) {
            bail!(
                "unknown setting `{key}` in {}; known settings: {}",
                path.display(),
                known.join(", ")
            );
        }
        // serve's other settings (listen, retention, ...) mean nothing to this command.
        if !takes.contains(&long) || set_by_user(matches, &long.replace('-', "_")) {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => args.push(format!("--{long}")),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => args.extend([format!("--{long}"), s.clone()]),
            toml::Value::Integer(n) => args.extend([format!("--{long}"), n.to_string()]),
            other => bail!(
                "setting `{key}` in {} must be a string, number or boolean, not {}",
                path.display(),
                other.type_str()
            ),
        }
    }
    // Everything the user typed after the command, unchanged, so flags keep their
    // precedence.
    let typed: Vec<String> = std::env::args()
        .skip_while(|a| a != command)
        .skip(1)
        .collect();
    args.extend(typed);
    Ok(args)
}
