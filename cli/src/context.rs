//! Contexts: named clusters (their masters, Marathon, Chronos, credentials, CA), kept in
//! `$XDG_CONFIG_HOME/plateau/contexts.toml` (`~/.config/plateau/contexts.toml`), with the one
//! in use. The file is written whole (a temporary file renamed over it) and readable by its
//! owner only, since it may hold a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CliError, Result};

/// Marathon's port, when a context names none.
pub const MARATHON_PORT: u16 = 8080;
/// Chronos' port, when a context names none.
pub const CHRONOS_PORT: u16 = 4400;
/// The name of the context used when the file names none: `plateau dev` on this machine.
pub const LOCAL_CONTEXT: &str = "local";
/// The longest context name.
pub const CONTEXT_NAME_LEN_MAX: usize = 64;

/// One cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Context {
    /// The masters, `HOST:PORT` or URLs (`https://HOST:PORT`).
    pub masters: Vec<String>,
    /// Marathon's URL or `HOST:PORT` (default: the first master's host, port 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marathon: Option<String>,
    /// Chronos' URL or `HOST:PORT` (default: the first master's host, port 4400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chronos: Option<String>,
    /// A credentials file (Mesos' JSON `{"credentials":[{"principal","secret"}]}`, a JSON
    /// `{"principal","secret"}`, or a text line `principal secret`), read at each use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// A principal given inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The cluster CA (PEM): HTTPS trusting it alone; addresses without a scheme become https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// The contexts file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Contexts {
    /// The context in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Every context by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

impl Context {
    /// `plateau dev` on this machine.
    pub fn local() -> Context {
        Context {
            masters: vec!["127.0.0.1:5050".into()],
            ..Default::default()
        }
    }

    /// The scheme of addresses given without one.
    fn scheme(&self) -> &'static str {
        if self.ca.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `address` as a base URL (no trailing slash).
    pub fn url(&self, address: &str) -> String {
        let address = address.trim_end_matches('/');
        if address.starts_with("http://") || address.starts_with("https://") {
            address.to_string()
        } else {
            format!("{}://{address}", self.scheme())
        }
    }

    /// The masters' base URLs.
    pub fn master_urls(&self) -> Vec<String> {
        self.masters.iter().map(|m| self.url(m)).collect()
    }

    /// The host of the first master (for Marathon's and Chronos' defaults).
    fn first_host(&self) -> String {
        let first = self.masters.first().map(String::as_str).unwrap_or("");
        let bare = first
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let bare = bare.split('/').next().unwrap_or(bare);
        match bare.rsplit_once(':') {
            Some((host, _)) => host.to_string(),
            None => bare.to_string(),
        }
    }

    /// Marathon's base URL.
    pub fn marathon_url(&self) -> String {
        match &self.marathon {
            Some(m) => self.url(m),
            None => self.url(&format!("{}:{MARATHON_PORT}", self.first_host())),
        }
    }

    /// Chronos' base URL.
    pub fn chronos_url(&self) -> String {
        match &self.chronos {
            Some(c) => self.url(c),
            None => self.url(&format!("{}:{CHRONOS_PORT}", self.first_host())),
        }
    }

    /// The principal and secret to send (HTTP Basic), if any.
    pub fn basic_auth(&self) -> Result<Option<(String, String)>> {
        if let Some(path) = &self.credentials {
            return read_credentials(path).map(Some);
        }
        match (&self.principal, &self.secret) {
            (Some(p), Some(s)) => Ok(Some((p.clone(), s.clone()))),
            (Some(p), None) => Ok(Some((p.clone(), String::new()))),
            _ => Ok(None),
        }
    }

    /// Who the context authenticates as, for listings (never the secret).
    pub fn principal_name(&self) -> Option<String> {
        match &self.credentials {
            Some(path) => Some(
                read_credentials(path)
                    .map(|(p, _)| p)
                    .unwrap_or_else(|_| format!("(unreadable {})", path.display())),
            ),
            None => self.principal.clone(),
        }
    }
}

/// The principal and secret of a credentials file.
pub fn read_credentials(path: &Path) -> Result<(String, String)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::Usage(format!(
            "cannot read the credentials file {}: {e}",
            path.display()
        ))
    })?;
    parse_credentials(&text).ok_or_else(|| {
        CliError::Usage(format!(
            "{}: expected {{\"principal\":\"P\",\"secret\":\"S\"}}, Mesos' {{\"credentials\":[{{\"principal\":\"P\",\"secret\":\"S\"}}]}}, or a line `P S`",
            path.display()
        ))
    })
}

/// Parse credentials: JSON (one, or Mesos' list: its first) or a `principal secret` line.
pub fn parse_credentials(text: &str) -> Option<(String, String)> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        let one = value
            .get("credentials")
            .and_then(|c| c.get(0))
            .unwrap_or(&value);
        let principal = one.get("principal")?.as_str()?.to_string();
        let secret = one.get("secret")?.as_str()?.to_string();
        return Some((principal, secret));
    }
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (principal, secret) = line.split_once(char::is_whitespace)?;
    Some((principal.to_string(), secret.trim().to_string()))
}

/// Checks a context name: letters, digits, `.`, `_`, `-`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= CONTEXT_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "context name '{name}': use 1 to {CONTEXT_NAME_LEN_MAX} letters, digits, '.', '_' or '-'"
        )))
    }
}

/// Where the contexts file lives: `$XDG_CONFIG_HOME/plateau/contexts.toml`, else
/// `$HOME/.config/plateau/contexts.toml`.
pub fn default_path() -> Result<PathBuf> {
    use etcetera::BaseStrategy as _;
    let base = etcetera::choose_base_strategy().map_err(|e| {
        CliError::Usage(format!(
            "cannot find the configuration directory ({e}); set HOME or XDG_CONFIG_HOME"
        ))
    })?;
    Ok(base.config_dir().join("plateau").join("contexts.toml"))
}

impl Contexts {
    /// Parse the file's text.
    pub fn parse(text: &str) -> Result<Contexts> {
        toml::from_str(text).map_err(|e| CliError::Usage(format!("the contexts file: {e}")))
    }

    /// The file's text.
    pub fn render(&self) -> String {
        toml::to_string_pretty(self).expect("contexts serialize to TOML")
    }

    /// Load `path` (an absent file is no contexts).
    pub fn load(path: &Path) -> Result<Contexts> {
        match std::fs::read_to_string(path) {
            Ok(text) => Contexts::parse(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(CliError::Usage(format!("reading {}: {e}", path.display()))),
        }
    }

    /// Write to `path` (owner-only permissions, replaced whole).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let fail = |e: std::io::Error| CliError::Usage(format!("writing {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let temporary = path.with_extension("toml.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(fail)?;
        file.write_all(self.render().as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&temporary, path).map_err(fail)
    }

    /// The context named `name`, else the current one, else `plateau dev`'s (named "local")
    /// when the file has none.
    pub fn select(&self, name: Option<&str>) -> Result<(String, Context)> {
        let wanted = name.map(str::to_string).or_else(|| self.current.clone());
        match wanted {
            Some(name) => match self.contexts.get(&name) {
                Some(context) => Ok((name, context.clone())),
                None if name == LOCAL_CONTEXT && self.contexts.is_empty() => {
                    Ok((name, Context::local()))
                }
                None => Err(CliError::Usage(format!(
                    "no context named '{name}' (known: {}); add it with `plateau context add {name} --master HOST:PORT`",
                    self.known()
                ))),
            },
            None if self.contexts.is_empty() => Ok((LOCAL_CONTEXT.to_string(), Context::local())),
            None => Err(CliError::Usage(format!(
                "no context in use (known: {}); pick one with `plateau context use NAME` or --context NAME",
                self.known()
            ))),
        }
    }

    /// Every context, by name (`plateau dev`'s when there is none).
    pub fn all(&self) -> Vec<(String, Context)> {
        if self.contexts.is_empty() {
            return vec![(LOCAL_CONTEXT.to_string(), Context::local())];
        }
        self.contexts
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect()
    }

    fn known(&self) -> String {
        if self.contexts.is_empty() {
            "none".into()
        } else {
            self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contexts_file_round_trips_and_is_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("plateau-cli-ctx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("plateau").join("contexts.toml");
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            "prod".into(),
            Context {
                masters: vec!["10.0.0.1:5050".into(), "10.0.0.2:5050".into()],
                marathon: Some("https://10.0.0.9:8443".into()),
                principal: Some("ops".into()),
                secret: Some("s3cret".into()),
                ca: Some("/etc/plateau/ca.pem".into()),
                ..Default::default()
            },
        );
        contexts.contexts.insert("dev".into(), Context::local());
        contexts.current = Some("prod".into());
        contexts.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Contexts::load(&path).unwrap(), contexts);
        let (name, prod) = contexts.select(None).unwrap();
        assert_eq!(name, "prod");
        assert_eq!(
            prod.master_urls(),
            ["https://10.0.0.1:5050", "https://10.0.0.2:5050"]
        );
        assert_eq!(prod.marathon_url(), "https://10.0.0.9:8443");
        assert_eq!(prod.chronos_url(), "https://10.0.0.1:4400");
        assert_eq!(
            contexts.select(Some("dev")).unwrap().1.marathon_url(),
            "http://127.0.0.1:8080"
        );
        assert!(matches!(
            contexts.select(Some("nope")),
            Err(CliError::Usage(m)) if m.contains("prod")
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_file_means_plateau_dev_and_a_bad_file_is_a_usage_error() {
        let empty = Contexts::default();
        let (name, local) = empty.select(None).unwrap();
        assert_eq!(name, LOCAL_CONTEXT);
        assert_eq!(local.master_urls(), ["http://127.0.0.1:5050"]);
        assert!(Contexts::parse("contexts = 3").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("prod-eu.1").is_ok());
    }

    #[test]
    fn credentials_come_in_three_shapes() {
        let want = Some(("p".to_string(), "s".to_string()));
        assert_eq!(parse_credentials(r#"{"principal":"p","secret":"s"}"#), want);
        assert_eq!(
            parse_credentials(r#"{"credentials":[{"principal":"p","secret":"s"}]}"#),
            want
        );
        assert_eq!(parse_credentials("\np s\n"), want);
        assert_eq!(parse_credentials("{}"), None);
    }
}
