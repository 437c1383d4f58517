//! The tokens made when a store is new (`serve`'s first start, or `gen` into an empty data
//! dir): written to `<data dir>/initial-tokens.txt`, readable only by the user the command
//! runs as, and printed only when stdout is a terminal, so that a service manager's log
//! (systemd's journal, `docker logs`) never holds them.

use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file's name inside the data dir.
pub const FILE: &str = "initial-tokens.txt";

/// Makes the new store's first admin token and hands it over with `project`'s write
/// token, as [`announce`] does.
pub fn hand_over(
    store: &dyn anonstats_server::store::KeyStore,
    data_dir: &Path,
    project: &str,
    write: &str,
) -> anyhow::Result<()> {
    let admin = store.create_secret(
        anonstats_server::store::Role::Admin,
        &anonstats_server::store::NewSecret {
            name: "initial".into(),
            expires_ms: None,
        },
    )?;
    announce(data_dir, project, write, &admin)
}

/// Writes the file (replacing an older one whole), then says where it is; the tokens
/// themselves go to stdout only when it is a terminal.
fn announce(data_dir: &Path, project: &str, write: &str, admin: &str) -> anyhow::Result<()> {
    let path = data_dir.join(FILE);
    let text = format!(
        "# The tokens anonstats made for this new store. Only the admin token's hash is\n\
         # stored: keep it somewhere safe, then delete this file.\n\
         project: {project}\n\
         write token: {write}\n\
         admin token: {admin}\n"
    );
    write_private(&path, text.as_bytes()).with_context(|| {
        format!(
            "cannot write the new tokens to {}; make new ones with `anonstats keys \
             create-admin` and `anonstats keys create-write-key {project}`",
            path.display()
        )
    })?;
    println!("created project {project:?}");
    println!(
        "its write token and an admin token are in {} (readable only by this user)",
        path.display()
    );
    if std::io::stdout().is_terminal() {
        println!("write token: {write}");
        println!("admin token: {admin}");
        println!("(the admin token is shown only now and in that file; only its hash is stored)");
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Writes `bytes` to `path` with mode 0600 through a temp file, so that the file is whole
/// or absent, and never readable by others, even for a moment.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp: PathBuf = dir.join(format!(".{FILE}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}
