//! Flags from a config file and from the environment, for the daemons (`plateau master`,
//! `slave`, `marathon`, `chronos`, `balancer`).
//!
//! One parser reads all three sources: clap, with the same value checks (durations, resource
//! strings, master lists) and the same error messages whichever source a value came from.
//! The file (TOML, `--config FILE` or `PLATEAU_CONFIG`; its keys are the flag names, `work-dir`
//! or `work_dir`) and the environment (`PLATEAU_<FLAG>`, e.g. `PLATEAU_WORK_DIR`) are turned
//! into flags placed ahead of the command line's own: file, then environment, then command
//! line. Each flag overrides an earlier occurrence of itself, so a flag wins over the
//! environment, which wins over the file. A file key that is no flag of the command is an
//! error naming the key, as is a value of the wrong kind.
//!
//! Why not a layered-config crate (figment, config): their layers meet in a serde struct, so
//! every flag would be declared twice (clap and serde) and each value parser written twice;
//! here the only other crate is `toml`, to read the file.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// The commands that take `--config` and `PLATEAU_<FLAG>`.
pub const DAEMONS: [&str; 5] = ["master", "slave", "marathon", "chronos", "balancer"];

/// The environment variable naming a config file when `--config` is not given.
pub const CONFIG_ENV: &str = "PLATEAU_CONFIG";

/// Largest config file read: a config of a few dozen flags is a few KiB.
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Global flags that take a value (so that the word after them is not taken for the command).
const GLOBAL_VALUE_FLAGS: [&str; 2] = ["--config", "--log-format"];

/// Argument ids that are no flag of a daemon (clap's own, and the global ones).
const NOT_DAEMON_FLAGS: [&str; 4] = ["help", "version", "config", "log_format"];

/// What the help of each daemon says about the other sources.
const SOURCES_HELP: &str = "Every flag can also come from the environment, PLATEAU_<FLAG> (PLATEAU_WORK_DIR=/var/lib/plateau), or from a TOML file, --config FILE or PLATEAU_CONFIG=FILE, whose keys are the flag names (work-dir = \"/var/lib/plateau\"). A flag wins over the environment, the environment over the file.";

/// The environment variable of flag `--long`: `PLATEAU_WORK_DIR` for `--work-dir`.
pub fn env_name(long: &str) -> String {
    format!("PLATEAU_{}", long.replace('-', "_").to_ascii_uppercase())
}

/// `command` (the CLI as derived) made ready for [`expand`]'s output: each daemon's flags
/// override an earlier occurrence of themselves, and its help names the other sources.
pub fn command(command: clap::Command) -> clap::Command {
    DAEMONS.iter().fold(command, |command, name| {
        command.mut_subcommand(name, |sub| {
            sub.args_override_self(true).after_help(SOURCES_HELP)
        })
    })
}

/// `argv` with the flags of the config file and of the environment (`env` looks a variable
/// up) put before the command line's own. Unchanged when the command is not a daemon.
pub fn expand(
    command: &clap::Command,
    argv: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Vec<OsString>, String> {
    let config = config_path(&argv);
    let Some((at, name)) = subcommand(&argv) else {
        return match config {
            Some(_) => Err(format!("--config is a flag of {}", DAEMONS.join(", "))),
            None => Ok(argv),
        };
    };
    if !DAEMONS.contains(&name.as_str()) {
        return match config {
            Some(_) => Err(format!(
                "--config is a flag of {}, not of `plateau {name}`",
                DAEMONS.join(", ")
            )),
            None => Ok(argv),
        };
    }
    let sub = command
        .find_subcommand(&name)
        .ok_or_else(|| format!("no command {name}"))?;
    let flags: Vec<&clap::Arg> = sub
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_DAEMON_FLAGS.contains(&a.get_id().as_str()))
        .collect();

    let config = config.or_else(|| env(CONFIG_ENV).map(PathBuf::from));
    let mut from_file = Vec::new();
    if let Some(path) = &config {
        let table = read_table(path)?;
        for (key, value) in &table {
            let long = key.replace('_', "-");
            let flag = flags
                .iter()
                .find(|a| a.get_long() == Some(long.as_str()))
                .ok_or_else(|| {
                    format!(
                        "{}: unknown key `{key}`: `plateau {name}` has no flag --{long}",
                        path.display()
                    )
                })?;
            // The environment wins over the file: leave the key to it.
            if env(&env_name(&long)).is_some() {
                continue;
            }
            from_file.extend(
                file_value(flag, value)
                    .map_err(|e| format!("{}: key `{key}`: {e}", path.display()))?,
            );
        }
    }
    let mut from_env = Vec::new();
    for flag in &flags {
        let long = flag.get_long().expect("filtered on a long name");
        let var = env_name(long);
        if let Some(value) = env(&var) {
            from_env.extend(env_value(flag, &value).map_err(|e| format!("{var}: {e}"))?);
        }
    }
    let mut expanded: Vec<OsString> = argv[..=at].to_vec();
    expanded.extend(from_file);
    expanded.extend(from_env);
    expanded.extend(argv[at + 1..].iter().cloned());
    Ok(expanded)
}

/// `--config FILE` or `--config=FILE`, wherever it is.
fn config_path(argv: &[OsString]) -> Option<PathBuf> {
    let mut words = argv.iter().skip(1);
    while let Some(word) = words.next() {
        if word == "--config" {
            return words.next().map(PathBuf::from);
        }
        if let Some(path) = word.to_str().and_then(|w| w.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    None
}

/// The command word and its place: the first word that is neither a flag nor a global flag's
/// value.
fn subcommand(argv: &[OsString]) -> Option<(usize, String)> {
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_str()?;
        if GLOBAL_VALUE_FLAGS.contains(&word) {
            i += 2;
        } else if word.starts_with('-') {
            i += 1;
        } else {
            return Some((i, word.to_string()));
        }
    }
    None
}

/// The config file as a TOML table.
fn read_table(path: &Path) -> Result<toml::Table, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(format!(
            "{}: longer than {CONFIG_FILE_BYTES_MAX} bytes",
            path.display()
        ));
    }
    text.parse::<toml::Table>()
        .map_err(|e| format!("{}: not TOML: {e}", path.display()))
}

/// Whether `flag` is a switch (`--https`) rather than a flag with a value.
fn is_switch(flag: &clap::Arg) -> bool {
    !flag.get_action().takes_values()
}

/// The words of flag `--long` with `value` (`--long=value`: a value that starts with `-` is
/// not taken for a flag).
fn with_value(flag: &clap::Arg, value: impl AsRef<OsStr>) -> Vec<OsString> {
    let mut word = OsString::from(format!("--{}=", flag.get_long().unwrap_or_default()));
    word.push(value);
    vec![word]
}

/// The words of a file value: a switch takes `true` or `false`; a flag with a value takes a
/// string, a number, a boolean, a list (joined with commas: `peers = ["m1:5050", "m2:5050"]`)
/// or a table of numbers (`weights = { apps = 2, jobs = 1 }`, joined as `apps=2,jobs=1`).
fn file_value(flag: &clap::Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    if is_switch(flag) {
        return match value {
            toml::Value::Boolean(true) => {
                Ok(vec![
                    format!("--{}", flag.get_long().unwrap_or_default()).into()
                ])
            }
            toml::Value::Boolean(false) => Ok(Vec::new()),
            _ => Err("a switch: true or false".into()),
        };
    }
    let text = match value {
        toml::Value::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        toml::Value::Table(pairs) => pairs
            .iter()
            .map(|(k, v)| scalar(v).map(|v| format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        other => scalar(other)?,
    };
    Ok(with_value(flag, text))
}

/// A string, a number or a boolean as the flag's text.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err("a string, a number, a boolean, or a list of them".into()),
    }
}

/// The words of an environment value: a switch takes 1/0, true/false, yes/no, on/off (or an
/// empty value: off).
fn env_value(flag: &clap::Arg, value: &OsStr) -> Result<Vec<OsString>, String> {
    if !is_switch(flag) {
        return Ok(with_value(flag, value));
    }
    let text = value.to_str().unwrap_or("?").to_ascii_lowercase();
    match text.as_str() {
        "1" | "true" | "yes" | "on" => {
            Ok(vec![
                format!("--{}", flag.get_long().unwrap_or_default()).into()
            ])
        }
        "" | "0" | "false" | "no" | "off" => Ok(Vec::new()),
        _ => Err(format!(
            "'{}' is not a switch value (true or false)",
            value.to_string_lossy()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::{parse_cli, Cli, Command};

    /// A config file in a fresh temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, text: &str) -> TempFile {
            let dir = std::env::temp_dir()
                .join(format!("plateau-config-test-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("config.toml");
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Cli, String> {
        let env: BTreeMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let argv = std::iter::once("plateau")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        parse_cli(argv, &|name| env.get(name).cloned()).map_err(|e| e.to_string())
    }

    /// The error of a command line that must be refused.
    fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
        match parse(args, env) {
            Ok(_) => panic!("accepted: {args:?} with {env:?}"),
            Err(e) => e,
        }
    }

    fn master(cli: Cli) -> crate::MasterArgs {
        match cli.command {
            Command::Master(args) => args,
            _ => panic!("not a master"),
        }
    }

    #[test]
    fn env_names_are_the_flag_in_capitals() {
        assert_eq!(env_name("work-dir"), "PLATEAU_WORK_DIR");
        assert_eq!(env_name("tls-dir"), "PLATEAU_TLS_DIR");
    }

    #[test]
    fn a_flag_wins_over_the_environment_which_wins_over_the_file() {
        let file = TempFile::new(
            "precedence",
            "listen = \"127.0.0.1:6050\"\nwork_dir = \"/from/file\"\ntls-dir = \"/tls/file\"\n\
             agent-timeout = \"9s\"\nweights = { apps = 2, jobs = 1 }\nhttps = true\n",
        );
        let config = file.0.to_str().unwrap();

        // The file alone.
        let args = master(parse(&["master", "--config", config], &[]).unwrap());
        assert_eq!(args.listen.to_string(), "127.0.0.1:6050");
        assert_eq!(args.work_dir, Path::new("/from/file"));
        assert_eq!(args.tls_dir, Path::new("/tls/file"));
        assert_eq!(args.agent_timeout, Duration::from_secs(9));
        assert_eq!(args.weights.unwrap()["apps"], 2.0);
        assert!(args.security.https);

        // The environment over the file; the flag over both.
        let env = [
            ("PLATEAU_WORK_DIR", "/from/env"),
            ("PLATEAU_AGENT_TIMEOUT", "7s"),
            ("PLATEAU_HTTPS", "false"),
        ];
        let args = master(
            parse(
                &["master", "--config", config, "--agent-timeout", "3s"],
                &env,
            )
            .unwrap(),
        );
        assert_eq!(args.work_dir, Path::new("/from/env"), "env over file");
        assert_eq!(args.agent_timeout, Duration::from_secs(3), "flag over env");
        assert_eq!(args.tls_dir, Path::new("/tls/file"), "file where no other");
        assert!(
            !args.security.https,
            "PLATEAU_HTTPS=false turns the file's switch off"
        );

        // The config file named by the environment; a flag before the command is global.
        let args = master(
            parse(
                &["--log-format", "json", "master", "--work-dir", "/flag"],
                &[("PLATEAU_CONFIG", config)],
            )
            .unwrap(),
        );
        assert_eq!(args.work_dir, Path::new("/flag"));
        assert_eq!(args.listen.to_string(), "127.0.0.1:6050");
    }

    #[test]
    fn the_environment_alone_gives_required_flags() {
        let env = [
            ("PLATEAU_MASTER", "127.0.0.1:5050"),
            ("PLATEAU_WORK_DIR", "/var/lib/plateau/slave"),
            ("PLATEAU_TLS_DIR", "/etc/plateau/tls"),
            ("PLATEAU_ATTRIBUTES", "rack:r1"),
        ];
        let cli = parse(&["slave"], &env).unwrap();
        let Command::Slave(args) = cli.command else {
            panic!("not a slave")
        };
        assert_eq!(args.attributes.as_deref(), Some("rack:r1"));
        assert_eq!(args.work_dir, Path::new("/var/lib/plateau/slave"));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let file = TempFile::new("unknown", "work-dir = \"/w\"\nwork-dri = \"/typo\"\n");
        let err = refused(
            &[
                "master",
                "--config",
                file.0.to_str().unwrap(),
                "--tls-dir",
                "/t",
            ],
            &[],
        );
        assert!(err.contains("unknown key `work-dri`"), "{err}");
        assert!(err.contains("config.toml"), "{err}");

        // A flag of another role is unknown too.
        let file = TempFile::new("other-role", "peers = \"a:1\"\n");
        let err = refused(&["slave", "--config", file.0.to_str().unwrap()], &[]);
        assert!(err.contains("unknown key `peers`"), "{err}");
    }

    #[test]
    fn bad_values_are_errors_naming_their_source() {
        let file = TempFile::new("bad-switch", "https = \"yes please\"\n");
        let err = refused(&["master", "--config", file.0.to_str().unwrap()], &[]);
        assert!(err.contains("key `https`"), "{err}");

        let file = TempFile::new("bad-duration", "agent-timeout = \"soon\"\n");
        let err = refused(
            &[
                "master",
                "--config",
                file.0.to_str().unwrap(),
                "--work-dir",
                "/w",
                "--tls-dir",
                "/t",
            ],
            &[],
        );
        assert!(err.contains("soon"), "{err}");

        let err = refused(
            &["master", "--work-dir", "/w", "--tls-dir", "/t"],
            &[("PLATEAU_INSECURE_OPEN_API", "maybe")],
        );
        assert!(err.contains("PLATEAU_INSECURE_OPEN_API"), "{err}");

        let file = TempFile::new("not-toml", "work-dir = \n");
        let err = refused(&["master", "--config", file.0.to_str().unwrap()], &[]);
        assert!(err.contains("not TOML"), "{err}");

        let err = refused(&["master", "--config", "/nonexistent/plateau.toml"], &[]);
        assert!(err.contains("/nonexistent/plateau.toml"), "{err}");
    }

    #[test]
    fn other_commands_ignore_the_environment_and_refuse_a_config_file() {
        let cli = parse(&["sim", "--seed", "1"], &[("PLATEAU_WORK_DIR", "/x")]).unwrap();
        assert!(matches!(cli.command, Command::Sim { .. }));
        let err = refused(&["dev", "--config", "/x.toml"], &[]);
        assert!(err.contains("--config is a flag of"), "{err}");
    }

    /// Every example of `deploy/config/` loads through the real path of its role.
    #[test]
    fn the_example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config");
        for role in DAEMONS {
            let path = dir.join(format!("{role}.toml"));
            assert!(path.is_file(), "{} is missing", path.display());
            let cli = parse(&[role, "--config", path.to_str().unwrap()], &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let ok = match (role, &cli.command) {
                ("master", Command::Master(a)) => a.peers.is_some(),
                ("slave", Command::Slave(a)) => a.attributes.is_some(),
                ("marathon", Command::Marathon(a)) => a.framework.listen.port() == 8080,
                ("chronos", Command::Chronos(a)) => a.framework.listen.port() == 4400,
                ("balancer", Command::Balancer(a)) => a.stats.port() == 9090,
                _ => false,
            };
            assert!(ok, "{} did not give what it says", path.display());
        }
    }
}
