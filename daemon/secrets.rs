//! secrets: values that must never be logged, printed or put in an error —
//! the Event Hubs connection string, SASL passwords, webhook and API
//! tokens. They come from a systemd credential (`LoadCredential=`, read from
//! `$CREDENTIALS_DIRECTORY/<name>`) or an environment variable, never from
//! the configuration file or the command line.

use std::path::PathBuf;

/// A secret value: shows as `***` in every Debug.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    /// The value, for the one place that hands it on (librdkafka, an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The prefix systemd gives credentials loaded from a directory: the unit
/// loads every file of `/etc/mfawatch/credentials` as `mfawatch_<file>`
/// (`LoadCredential=mfawatch:/etc/mfawatch/credentials`).
const DIRECTORY_PREFIX: &str = "mfawatch_";

/// A systemd credential's text, or why there is none. `name` is found as it
/// is, or as a file of the unit's credentials directory (`mfawatch_<name>`).
pub fn read_credential(name: &str) -> Result<String, String> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or("CREDENTIALS_DIRECTORY is not set")?;
    let path = PathBuf::from(&dir).join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let prefixed = PathBuf::from(&dir).join(format!("{DIRECTORY_PREFIX}{name}"));
            std::fs::read_to_string(&prefixed).map_err(|_| {
                format!(
                    "cannot read {} (nor {}): {e}; put the file in /etc/mfawatch/credentials/",
                    path.display(),
                    prefixed.display()
                )
            })
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A secret from the systemd credential `credential` when given and
/// readable, else from the environment variable `env`. The error names
/// where it looked, never a value.
pub fn read(credential: Option<&str>, env: Option<&str>) -> Result<Secret, String> {
    let mut tried = Vec::new();
    if let Some(name) = credential {
        match read_credential(name) {
            Ok(text) if !text.trim().is_empty() => return Ok(Secret(text.trim().to_owned())),
            Ok(_) => tried.push(format!("systemd credential {name:?} is empty")),
            Err(reason) => tried.push(format!("systemd credential {name:?} is not available ({reason})")),
        }
    }
    if let Some(var) = env {
        match std::env::var(var) {
            Ok(text) if !text.trim().is_empty() => return Ok(Secret(text.trim().to_owned())),
            _ => tried.push(format!("environment variable {var} is not set")),
        }
    }
    Err(if tried.is_empty() { "no credential or environment variable named".into() } else { tried.join(" and ") })
}

/// Keeps the process's memory, which holds the secrets, out of core dumps
/// and from other processes of the same user (`/proc/<pid>/mem`, ptrace):
/// the watchdog ends a stuck daemon with SIGABRT, which would otherwise dump
/// it. The units set `LimitCORE=0` as well.
pub fn no_core_dumps() {
    // SAFETY: PR_SET_DUMPABLE takes an integer argument and changes only this
    // process's dumpable flag; the unused arguments are 0 as prctl(2) asks.
    let done = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if done != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot keep the process out of core dumps");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_is_kept_out_of_core_dumps() {
        super::no_core_dumps();
        // SAFETY: PR_GET_DUMPABLE only reads the flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }
}
