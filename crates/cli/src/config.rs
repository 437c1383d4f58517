//! `serve --config FILE`: settings from a TOML file, under flags and environment
//! variables. Each key is a `serve` option's long name (`listen`, `data-dir` or
//! `data_dir`, `retention-days`, ...).

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use std::path::Path;

/// The command line with the file's settings added for every option that neither a flag
/// nor an environment variable set.
pub fn serve_args_with_file(path: &Path, matches: &ArgMatches) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let cmd = crate::Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .context("the serve command is missing")?;
    let known: Vec<String> = serve
        .get_arguments()
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config")
        .map(str::to_string)
        .collect();

    let mut args: Vec<String> = std::env::args().take(1).collect();
    args.push("serve".into());
    for (key, value) in &table {
        let long = key.replace('_', "-");
        if !known.contains(&long) {
            bail!(
                "unknown setting `{key}` in {}; known settings: {}",
                path.display(),
                known.join(", ")
            );
        }
        let id = long.replace('-', "_");
        if !matches!(
            matches.value_source(&id),
            None | Some(ValueSource::DefaultValue)
        ) {
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
    // Everything the user typed after `serve`, unchanged, so flags keep their precedence.
    let typed: Vec<String> = std::env::args()
        .skip_while(|a| a != "serve")
        .skip(1)
        .collect();
    args.extend(typed);
    Ok(args)
}
