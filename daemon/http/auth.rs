//! auth: who may read /api/v1. The API lists every user who signs in
//! without MFA, with their IPs: on any address but loopback it takes a bearer
//! token. Tokens come from a systemd credential, an environment variable or a
//! file — never the configuration file — several at once (rotation), and
//! are re-read on SIGHUP. Only their SHA-256 is kept; a presented token is
//! compared with each in constant time.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use crate::config::HttpConfig;

/// The tokens the API takes, as SHA-256 digests.
#[derive(Clone, Default)]
pub struct Tokens(Arc<RwLock<Vec<[u8; 32]>>>);

/// Tokens shorter than this are refused: a token is a password for the user list.
const MIN_TOKEN: usize = 16;

impl Tokens {
    /// Whether the API is open (no token configured).
    pub fn open(&self) -> bool {
        crate::locks::read(&self.0).is_empty()
    }

    pub fn count(&self) -> usize {
        crate::locks::read(&self.0).len()
    }

    /// Whether `Authorization: Bearer <presented>` is one of the tokens.
    pub fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        let tokens = crate::locks::read(&self.0);
        // Every token is compared, whatever matched: no timing tells which.
        tokens.iter().fold(subtle::Choice::from(0), |any, t| any | t.ct_eq(&digest)).into()
    }

    pub fn replace(&self, digests: Vec<[u8; 32]>) {
        *crate::locks::write(&self.0) = digests;
    }
}

/// Reads the configured tokens (digests). An error names where, never a value.
pub fn load(http: &HttpConfig) -> anyhow::Result<Vec<[u8; 32]>> {
    let mut texts: Vec<String> = Vec::new();
    if let Some(name) = &http.api_token_credential {
        let text = crate::secrets::read_credential(name)
            .map_err(|e| anyhow::anyhow!("http.api_token_credential {name:?}: {e}"))?;
        texts.extend(text.lines().map(str::to_owned));
    }
    if let Some(var) = &http.api_token_env {
        let text = std::env::var(var).map_err(|_| anyhow::anyhow!("http.api_token_env: {var} is not set"))?;
        texts.extend(text.split([',', '\n']).map(str::to_owned));
    }
    if let Some(path) = &http.api_token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("http.api_token_file {}: {e}", path.display()))?;
        texts.extend(text.lines().map(|l| l.split('#').next().unwrap_or("").to_owned()));
    }
    let configured =
        http.api_token_credential.is_some() || http.api_token_env.is_some() || http.api_token_file.is_some();
    let mut digests = Vec::new();
    for (i, token) in texts.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).enumerate() {
        anyhow::ensure!(
            token.len() >= MIN_TOKEN,
            "API token number {} is shorter than {MIN_TOKEN} characters: use a long random one (e.g. `openssl rand -hex 32`)",
            i + 1
        );
        digests.push(sha2::Sha256::digest(token.as_bytes()).into());
    }
    // Tokens asked for but none there (an emptied file, a credential not
    // written yet) must never mean an open API.
    anyhow::ensure!(
        !configured || !digests.is_empty(),
        "the API token source ({}) holds no token: refusing to open /api/v1 to everyone; put the tokens back (one per line), or remove the http.api_token_* setting to serve the API on loopback without tokens",
        sources(http)
    );
    Ok(digests)
}

/// Where the configuration says the tokens are, for messages.
fn sources(http: &HttpConfig) -> String {
    let mut named = Vec::new();
    if let Some(name) = &http.api_token_credential {
        named.push(format!("credential {name:?}"));
    }
    if let Some(var) = &http.api_token_env {
        named.push(format!("environment variable {var}"));
    }
    if let Some(path) = &http.api_token_file {
        named.push(format!("file {}", path.display()));
    }
    named.join(", ")
}

/// Whether the API may be served open (no token) at `listen`: only on a
/// loopback address. The rule for the start and for every reload.
pub fn check_open(http: &HttpConfig, tokens: usize) -> anyhow::Result<()> {
    let addr: SocketAddr = http.listen.parse().map_err(|e| anyhow::anyhow!("http.listen {:?}: {e}", http.listen))?;
    if tokens == 0 && !addr.ip().is_loopback() {
        anyhow::bail!(
            "http.listen {} can be reached from other hosts, and /api/v1 lists the users who sign in without MFA: give it API \
             tokens (http.api_token_credential with LoadCredential=, http.api_token_env, or http.api_token_file: one token per \
             line, e.g. `openssl rand -hex 32`), or listen on 127.0.0.1 behind a reverse proxy that authenticates",
            http.listen
        );
    }
    Ok(())
}

/// The tokens the daemon starts with; refuses an API reachable from other
/// hosts with none.
pub fn for_start(http: &HttpConfig) -> anyhow::Result<Tokens> {
    let digests = load(http)?;
    check_open(http, digests.len())?;
    let tokens = Tokens::default();
    tokens.replace(digests);
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(extra: &str) -> HttpConfig {
        let text = format!("[http]\n{extra}\n");
        crate::config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap().http
    }

    #[test]
    fn an_api_open_to_other_hosts_needs_a_token() {
        let err = for_start(&http("listen = \"0.0.0.0:9464\"")).err().unwrap().to_string();
        assert!(err.contains("api_token") && err.contains("127.0.0.1"), "{err}");
        assert!(for_start(&http("listen = \"127.0.0.1:9464\"")).unwrap().open());
    }

    #[test]
    fn tokens_come_from_a_file_several_at_once_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# rotated monthly\n0123456789abcdef0123\nfedcba9876543210fedc  # new\n").unwrap();
        let config = http(&format!("listen = \"0.0.0.0:9464\"\napi_token_file = {:?}", file.display().to_string()));
        let tokens = for_start(&config).unwrap();
        assert_eq!(tokens.count(), 2);
        assert!(tokens.admits("0123456789abcdef0123") && tokens.admits("fedcba9876543210fedc"));
        assert!(!tokens.admits("0123456789abcdef012") && !tokens.admits(""));
        std::fs::write(&file, "short\n").unwrap();
        let err = load(&config).err().unwrap().to_string();
        assert!(err.contains("shorter") && !err.contains("short\n"), "{err}");
    }

    #[test]
    fn a_token_source_that_reads_empty_never_opens_the_api() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# all tokens revoked\n\n").unwrap();
        for listen in ["127.0.0.1:9464", "0.0.0.0:9464"] {
            let config = http(&format!("listen = {listen:?}\napi_token_file = {:?}", file.display().to_string()));
            let err = for_start(&config).err().unwrap().to_string();
            assert!(err.contains("holds no token") && err.contains("tokens"), "{err}");
        }
    }
}
