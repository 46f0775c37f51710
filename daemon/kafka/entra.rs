//! entra: OAUTHBEARER tokens for Event Hubs from a Microsoft Entra service
//! principal, for namespaces that forbid shared access keys
//! (`disableLocalAuth`). Client-credentials grant against the tenant's token
//! endpoint, scope `https://<namespace>.servicebus.windows.net/.default`;
//! the service principal needs the "Azure Event Hubs Data Receiver" role
//! (and "Data Sender" on a dead-letter hub). The credential — a client
//! secret, or a certificate and its key — comes from a systemd credential or
//! the environment, never the configuration file.
//!
//! librdkafka asks for a token through the client context
//! (`generate_oauth_token`) inside `poll`, on the thread that polls: the
//! blocking HTTP call there is fine (the pipeline thread, the dead-letter
//! producer's), never on the async runtime.
//!
//! The same app registration may read Microsoft Graph for the directory
//! seeds (`directory.graph`, `source/graph.rs`): the same grant, another
//! scope ([`TokenSource::new`]).

use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::config::Config;
use crate::secrets::Secret;

/// Fetches tokens for one service principal.
pub struct TokenSource {
    token_url: String,
    client_id: String,
    scope: String,
    credential: Credential,
    agent: ureq::Agent,
}

enum Credential {
    Secret(Secret),
    /// A signed client assertion (RFC 7523) proves the certificate's key.
    Certificate {
        key: Box<ring::signature::RsaKeyPair>,
        /// base64url SHA-1 (`x5t`) and SHA-256 (`x5t#S256`) of the certificate's DER.
        thumbprints: (String, String),
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "TokenSource({}, client {})", self.token_url, self.client_id)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<serde_json::Value>,
}

/// An access token and when it expires.
pub struct Token {
    pub value: Secret,
    /// Unix ms.
    pub expires_at: i64,
}

impl TokenSource {
    /// The token source `auth = "entra"` asks for, with its credential read now.
    pub fn from_config(config: &Config) -> anyhow::Result<TokenSource> {
        let namespace = config.kafka.eventhubs_namespace.clone().unwrap_or_default();
        TokenSource::new(config, format!("https://{namespace}.servicebus.windows.net/.default"))
    }

    /// Tokens for `scope` from the app registration of `kafka.entra_*`, with
    /// its credential read now.
    pub fn new(config: &Config, scope: String) -> anyhow::Result<TokenSource> {
        let k = &config.kafka;
        let tenant = k.entra_tenant_id.clone().unwrap_or_default();
        let token_url = k
            .entra_token_url
            .clone()
            .unwrap_or_else(|| format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"));
        let credential = if k.entra_certificate_credential.is_some() || k.entra_certificate_env.is_some() {
            let pem =
                crate::secrets::read(k.entra_certificate_credential.as_deref(), k.entra_certificate_env.as_deref())
                    .map_err(|e| anyhow::anyhow!("the Entra client certificate: {e}"))?;
            certificate(pem.expose())?
        } else {
            let secret =
                crate::secrets::read(k.entra_client_secret_credential.as_deref(), k.entra_client_secret_env.as_deref())
                    .map_err(|e| anyhow::anyhow!("the Entra client secret: {e}"))?;
            Credential::Secret(secret)
        };
        // No redirect followed: the request carries the secret.
        let agent = crate::outbound::agent(Duration::from_secs(20));
        Ok(TokenSource {
            token_url,
            client_id: k.entra_client_id.clone().unwrap_or_default(),
            scope,
            credential,
            agent,
        })
    }

    /// A fresh token, for librdkafka.
    pub fn token(&self) -> Result<rdkafka::client::OAuthToken, String> {
        let token = self.fetch()?;
        Ok(rdkafka::client::OAuthToken {
            token: token.value.expose().to_owned(),
            principal_name: self.client_id.clone(),
            lifetime_ms: token.expires_at,
        })
    }

    /// A fresh token from the endpoint.
    pub fn fetch(&self) -> Result<Token, String> {
        let assertion;
        let mut form: Vec<(&str, &str)> =
            vec![("grant_type", "client_credentials"), ("client_id", &self.client_id), ("scope", &self.scope)];
        match &self.credential {
            Credential::Secret(secret) => form.push(("client_secret", secret.expose())),
            Credential::Certificate { key, thumbprints } => {
                assertion = client_assertion(key, thumbprints, &self.client_id, &self.token_url)?;
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                form.push(("client_assertion", &assertion));
            }
        }
        let mut response = self
            .agent
            .post(&self.token_url)
            .send_form(form)
            .map_err(|e| format!("token endpoint {}: {e}", self.token_url))?;
        let status = response.status();
        let body = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        if status.is_redirection() {
            let to = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
            return Err(format!(
                "token endpoint {} redirects to {} (not followed: the request carries the secret); configure kafka.entra_token_url",
                self.token_url,
                crate::outbound::redact_url(to)
            ));
        }
        if !status.is_success() {
            // Entra's error body names the problem (AADSTS codes), never the secret.
            let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let said = error["error_description"].as_str().or(error["error"].as_str()).unwrap_or("no description");
            return Err(format!(
                "token endpoint {} answered {status}: {}",
                self.token_url,
                said.lines().next().unwrap_or("")
            ));
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| format!("token endpoint {}: not a token response: {e}", self.token_url))?;
        let expires_in = match token.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(3600),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(3600),
            _ => 3600,
        };
        Ok(Token {
            value: Secret::new(token.access_token),
            expires_at: chrono::Utc::now().timestamp_millis() + expires_in * 1000,
        })
    }
}

/// The certificate's key and thumbprint, from PEM holding both.
fn certificate(pem: &str) -> anyhow::Result<Credential> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or_else(|| anyhow::anyhow!("the Entra client certificate credential holds no certificate"))?
        .map_err(|e| anyhow::anyhow!("the Entra client certificate: {e}"))?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the Entra client certificate credential holds no PKCS#8 private key: {e}"))?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der())
        .map_err(|e| anyhow::anyhow!("the Entra client certificate's key is not an RSA key: {e}"))?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    // Entra identifies the certificate of an RS256 assertion by its SHA-1
    // thumbprint (`x5t`); it is a name here, not a security property.
    let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
    let thumbprints = (b64(sha1.as_ref()), b64(&sha2::Sha256::digest(cert.as_ref())));
    Ok(Credential::Certificate { key: Box::new(key), thumbprints })
}

/// A JWT signed with the certificate's key (RS256), as Entra takes it.
fn client_assertion(
    key: &ring::signature::RsaKeyPair,
    (x5t, x5t_s256): &(String, String),
    client_id: &str,
    audience: &str,
) -> Result<String, String> {
    use ring::rand::SecureRandom as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": x5t, "x5t#S256": x5t_s256});
    // A random UUID (v4): never the same twice, even within a second.
    let mut id = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| "no randomness for the client assertion's id".to_string())?;
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let jti = format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..]);
    let claims = serde_json::json!({"aud": audience, "iss": client_id, "sub": client_id, "jti": jti, "nbf": now, "exp": now + 600});
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "cannot sign the client assertion".to_string())?;
    Ok(format!("{signing_input}.{}", b64(&signature)))
}
