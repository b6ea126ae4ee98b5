//! Connection profiles, as `nats context` keeps them: a named set of connection settings in
//! `<config>/profiles/<name>.json` (`<config>` is `$IDUNNO_CONFIG_DIR`, else
//! `$XDG_CONFIG_HOME/idunno`, else `~/.config/idunno`), chosen with `--profile NAME` (or
//! `IDUNNO_PROFILE`), else the one `idunno profile select` chose. A profile fills in what the
//! command line and the environment leave unset; they always win.

use crate::output::{clean, Output};
use anyhow::{bail, Context};
use bus_client::BusOptions;
use clap::parser::ValueSource;
use clap::{ArgMatches, Subcommand};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `idunno profile …`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Save the connection flags given with this command (`--nats`, `--nats-creds`, …) as a
    /// profile, replacing one of that name.
    Save {
        /// The profile's name.
        name: String,
        /// A few words about it.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the profiles (the selected one marked `*`).
    Ls,
    /// Show a profile (secrets hidden).
    Show {
        /// The profile's name.
        name: String,
    },
    /// Make a profile the one used when no `--profile` is given.
    Select {
        /// The profile's name.
        name: String,
    },
    /// Use no profile unless `--profile` names one.
    Unselect,
    /// Delete a profile.
    Rm {
        /// The profile's name.
        name: String,
    },
}

/// One profile's settings: the connection flags' values, by the flags' names without `--nats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creds: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_ca: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identity: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nkey: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inbox_prefix: Option<String>,
}

/// Whether the user set argument `id` (on the command line or in the environment).
fn set_by_user(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

impl Profile {
    /// The connection settings the user gave (not the defaults).
    fn from_given(bus: &BusOptions, m: &ArgMatches) -> Profile {
        let given = |id: &str| set_by_user(m, id);
        let pick = |id: &str, v: &Option<String>| v.clone().filter(|_| given(id));
        let path = |id: &str, v: &Option<PathBuf>| v.clone().filter(|_| given(id));
        Profile {
            description: None,
            url: Some(bus.url.clone()).filter(|_| given("url")),
            user: pick("user", &bus.user),
            password: pick("password", &bus.password),
            token: pick("token", &bus.token),
            creds: path("creds", &bus.creds),
            tls_ca: path("tls_ca", &bus.tls_ca),
            identity: path("identity", &bus.identity),
            nkey: path("nkey", &bus.nkey),
            tls_cert: path("tls_cert", &bus.tls_cert),
            tls_key: path("tls_key", &bus.tls_key),
            inbox_prefix: pick("inbox_prefix", &bus.inbox_prefix),
        }
    }

    /// `bus` with this profile's settings where the user gave none.
    pub fn apply(&self, mut bus: BusOptions, m: &ArgMatches) -> BusOptions {
        let given = |id: &str| set_by_user(m, id);
        fn fill<T: Clone>(slot: &mut Option<T>, from: &Option<T>, given: bool) {
            if !given && from.is_some() {
                slot.clone_from(from);
            }
        }
        if let (Some(url), false) = (&self.url, given("url")) {
            bus.url.clone_from(url);
        }
        fill(&mut bus.user, &self.user, given("user"));
        fill(&mut bus.password, &self.password, given("password"));
        fill(&mut bus.token, &self.token, given("token"));
        fill(&mut bus.creds, &self.creds, given("creds"));
        fill(&mut bus.tls_ca, &self.tls_ca, given("tls_ca"));
        fill(&mut bus.identity, &self.identity, given("identity"));
        fill(&mut bus.nkey, &self.nkey, given("nkey"));
        fill(&mut bus.tls_cert, &self.tls_cert, given("tls_cert"));
        fill(&mut bus.tls_key, &self.tls_key, given("tls_key"));
        fill(
            &mut bus.inbox_prefix,
            &self.inbox_prefix,
            given("inbox_prefix"),
        );
        bus
    }

    /// The same with its secrets hidden, for showing.
    fn redacted(&self) -> Profile {
        let hide = |s: &Option<String>| s.as_ref().map(|_| "<hidden>".to_string());
        Profile {
            password: hide(&self.password),
            token: hide(&self.token),
            ..self.clone()
        }
    }
}

/// Where profiles live.
pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("IDUNNO_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("idunno"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home).join(".config/idunno")),
        None => bail!("no place for profiles: set IDUNNO_CONFIG_DIR or HOME"),
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    bus_schemas::validate_token(name).map_err(|e| anyhow::anyhow!("bad profile name {name:?}: {e}"))
}

fn path_of(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    Ok(dir.join("profiles").join(format!("{name}.json")))
}

/// Reads profile `name`.
pub fn load(dir: &Path, name: &str) -> anyhow::Result<Profile> {
    let path = path_of(dir, name)?;
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("no profile {name:?} (see `idunno profile ls`)")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&text).with_context(|| format!("profile {}", path.display()))
}

/// The profile to use: `--profile`/`IDUNNO_PROFILE`, else the selected one, else none.
pub fn chosen(named: Option<&str>) -> anyhow::Result<Option<Profile>> {
    let dir = config_dir()?;
    let selected = std::fs::read_to_string(dir.join("selected")).ok();
    let name = match (named, selected.as_deref().map(str::trim)) {
        (Some(n), _) => n.to_string(),
        (None, Some(n)) if !n.is_empty() => n.to_string(),
        _ => return Ok(None),
    };
    load(&dir, &name).map(Some)
}

/// Writes `bytes` to `path` readable by the owner only (a profile may hold a password).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `idunno profile …`; `bus` and `matches` hold the connection flags given.
pub fn run(
    cmd: ProfileCommand,
    bus: &BusOptions,
    matches: &ArgMatches,
    out: &Output,
) -> anyhow::Result<()> {
    let dir = config_dir()?;
    match cmd {
        ProfileCommand::Save { name, description } => {
            let profile = Profile {
                description,
                ..Profile::from_given(bus, matches)
            };
            let path = path_of(&dir, &name)?;
            write_private(&path, &serde_json::to_vec_pretty(&profile)?)?;
            out.print(&profile.redacted(), || {
                vec![vec![format!("saved profile {name} in {}", path.display())]]
            });
        }
        ProfileCommand::Ls => ls(&dir, out)?,
        ProfileCommand::Show { name } => {
            let profile = load(&dir, &name)?.redacted();
            out.print(&profile, || {
                let json = serde_json::to_string_pretty(&profile).unwrap_or_default();
                json.lines().map(|l| vec![clean(l).into_owned()]).collect()
            });
        }
        ProfileCommand::Select { name } => {
            load(&dir, &name)?;
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("selected"), format!("{name}\n"))?;
            out.print(&serde_json::json!({ "selected": name }), || {
                vec![vec![format!("selected profile {name}")]]
            });
        }
        ProfileCommand::Unselect => {
            let _ = std::fs::remove_file(dir.join("selected"));
            out.print(&serde_json::json!({ "selected": null }), || {
                vec![vec!["no profile selected".into()]]
            });
        }
        ProfileCommand::Rm { name } => {
            let path = path_of(&dir, &name)?;
            std::fs::remove_file(&path).with_context(|| format!("no profile {name:?}"))?;
            out.print(&serde_json::json!({ "removed": name }), || {
                vec![vec![format!("removed profile {name}")]]
            });
        }
    }
    Ok(())
}

fn ls(dir: &Path, out: &Output) -> anyhow::Result<()> {
    let selected = std::fs::read_to_string(dir.join("selected")).unwrap_or_default();
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("profiles")) {
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let p = load(dir, name).unwrap_or_default();
            rows.push(serde_json::json!({
                "name": name,
                "selected": selected.trim() == name,
                "url": p.url,
                "description": p.description,
            }));
        }
    }
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out.print(&rows, || {
        let mut t = vec![vec![
            "".into(),
            "profile".into(),
            "nats".into(),
            "description".into(),
        ]];
        for r in &rows {
            let s = |k: &str| clean(r[k].as_str().unwrap_or("-")).into_owned();
            let mark = if r["selected"] == true { "*" } else { "" };
            t.push(vec![mark.into(), s("name"), s("url"), s("description")]);
        }
        t
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        bus: BusOptions,
    }

    fn parse(args: &[&str]) -> (BusOptions, ArgMatches) {
        let m = Args::command().get_matches_from(args);
        (Args::from_arg_matches(&m).unwrap().bus, m)
    }

    #[test]
    fn a_profile_fills_in_only_what_the_user_left_unset() {
        let profile = Profile {
            url: Some("nats://far:4222".into()),
            creds: Some("/p/creds".into()),
            ..Profile::default()
        };
        let (bus, m) = parse(&["x"]);
        let bus = profile.apply(bus, &m);
        assert_eq!(bus.url, "nats://far:4222");
        assert_eq!(bus.creds, Some("/p/creds".into()));
        let (bus, m) = parse(&["x", "--nats", "nats://near:4222"]);
        let bus = profile.apply(bus, &m);
        assert_eq!(bus.url, "nats://near:4222");
        assert_eq!(bus.creds, Some("/p/creds".into()));
    }

    #[test]
    fn saving_keeps_the_given_flags_only_and_hides_secrets_when_shown() {
        let (bus, m) = parse(&["x", "--nats-token", "s3cret", "--nats-tls-ca", "/ca.pem"]);
        let p = Profile::from_given(&bus, &m);
        assert_eq!(p.url, None, "the default URL is not saved");
        assert_eq!(p.token.as_deref(), Some("s3cret"));
        assert_eq!(p.tls_ca, Some("/ca.pem".into()));
        assert_eq!(p.redacted().token.as_deref(), Some("<hidden>"));
    }
}
