//! The secrets folder: every key and credential the services need, one file each, read at
//! start-up. On a laptop `shop up` generates it in the data folder; on Kubernetes it is a
//! Secret mounted as files, each service mounting only the files it needs. Nothing secret is
//! ever in the code, a log line or an error body: errors name the file, never its content.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;

use crate::auth::SigningKey;

/// The public keys every service verifies tokens with (a JSON Web Key Set).
pub const JWKS: &str = "jwks.json";
/// The key payment derives the secret of every payment link from.
pub const PAYMENT_LINK_KEY: &str = "payment-link-key";
/// The password notification sends mail with and the mailbox accepts.
pub const SMTP_PASSWORD: &str = "smtp-password";
/// The password of the courier's account.
pub const COURIER_PASSWORD: &str = "courier-password";
/// The password of the operator's account.
pub const OPERATOR_PASSWORD: &str = "operator-password";

/// The file of an issuer's private signing key (PKCS#8 PEM, Ed25519).
pub fn signing_key(issuer: &str) -> String {
    format!("{issuer}-signing-key.pem")
}

/// A folder of secret files.
#[derive(Clone, Debug)]
pub struct Secrets {
    dir: PathBuf,
}

impl Secrets {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The bytes of secret `name`; the error names the file and how to make it.
    pub fn read(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.path(name);
        std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the secret {} (`shop up` generates the secrets folder; elsewhere run `shop secrets generate --dir {}`)",
                path.display(),
                self.dir.display()
            )
        })
    }

    /// Secret `name` as text, without surrounding whitespace; empty is an error.
    pub fn read_text(&self, name: &str) -> anyhow::Result<String> {
        let bytes = self.read(name)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("the secret {} is not text", self.path(name).display()))?;
        let text = text.trim().to_owned();
        anyhow::ensure!(!text.is_empty(), "the secret {} is empty", self.path(name).display());
        Ok(text)
    }

    /// Creates every secret that is missing, leaving existing ones as they are: a signing key
    /// for each of `issuers`, the key set with the public key of every signing key (keys it
    /// already lists stay, so tokens of a rotated-out key verify until they expire), and the
    /// random passwords and keys. Returns the names of the files it wrote.
    pub fn generate(&self, issuers: &[&str]) -> anyhow::Result<Vec<String>> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create the secrets folder {}", self.dir.display()))?;
        let mut written = Vec::new();
        for issuer in issuers {
            let name = signing_key(issuer);
            if !self.path(&name).exists() {
                self.write(&name, SigningKey::generate_pem()?.as_bytes())?;
                written.push(name);
            }
        }
        for name in [PAYMENT_LINK_KEY, SMTP_PASSWORD, COURIER_PASSWORD, OPERATOR_PASSWORD] {
            if !self.path(name).exists() {
                self.write(name, random_text(24)?.as_bytes())?;
                written.push(name.to_owned());
            }
        }
        let mut keys = match std::fs::read(self.path(JWKS)) {
            Ok(bytes) => serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&bytes)
                .with_context(|| format!("{} is not a JSON Web Key Set", self.path(JWKS).display()))?,
            Err(_) => jsonwebtoken::jwk::JwkSet { keys: Vec::new() },
        };
        let mut changed = !self.path(JWKS).exists();
        for issuer in issuers {
            let jwk = SigningKey::load(self, issuer)?.public_jwk();
            if keys.find(jwk.common.key_id.as_deref().unwrap_or_default()).is_none() {
                keys.keys.push(jwk);
                changed = true;
            }
        }
        if changed {
            self.write(JWKS, serde_json::to_string_pretty(&keys)?.as_bytes())?;
            written.push(JWKS.to_owned());
        }
        Ok(written)
    }

    /// Writes `name` readable by its owner only, replacing it atomically.
    fn write(&self, name: &str, content: &[u8]) -> anyhow::Result<()> {
        let path = self.path(name);
        let temporary = self.path(&format!(".{name}.new"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// `bytes` random bytes from the operating system, base64url without padding.
pub fn random_text(bytes: usize) -> anyhow::Result<String> {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generating_twice_keeps_what_exists_and_the_key_set_lists_every_signing_key() {
        let dir = std::env::temp_dir().join(format!("shop-secrets-{}", uuid::Uuid::new_v4()));
        let secrets = Secrets::new(&dir);
        let first = secrets.generate(&["mobile", "order"]).unwrap();
        assert!(first.contains(&JWKS.to_owned()) && first.contains(&signing_key("order")), "{first:?}");
        let password = secrets.read_text(SMTP_PASSWORD).unwrap();
        assert!(password.len() >= 24, "{password}");
        assert!(secrets.generate(&["mobile", "order"]).unwrap().is_empty(), "nothing is rewritten");
        assert_eq!(secrets.read_text(SMTP_PASSWORD).unwrap(), password);

        // Rotation: a new key for order, the old public key still listed.
        std::fs::remove_file(secrets.path(&signing_key("order"))).unwrap();
        assert_eq!(secrets.generate(&["mobile", "order"]).unwrap(), [signing_key("order"), JWKS.to_owned()]);
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(&secrets.read(JWKS).unwrap()).unwrap();
        assert_eq!(set.keys.len(), 3);
        let mode = std::fs::metadata(secrets.path(SMTP_PASSWORD)).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_missing_secret_is_named_with_the_way_to_make_it() {
        let error = Secrets::new("/nonexistent/secrets").read(SMTP_PASSWORD).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/secrets/smtp-password") && error.contains("shop secrets generate"));
    }
}
