//! Signing and verifying tokens: Ed25519 keys (EdDSA JWTs). A key's id (`kid`) is its
//! issuer and its RFC 7638 thumbprint, so a verifier knows from the key set alone which
//! issuer a key belongs to, and a token signed by one issuer's key can never pass for
//! another's.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters,
    OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{AuthError, Claims, Role, PEOPLE_AUDIENCE};
use crate::secrets::{self, Secrets};

/// An issuer's private key, with the id verifiers know its public half by.
pub struct SigningKey {
    issuer: String,
    kid: String,
    key: EncodingKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("issuer", &self.issuer).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh Ed25519 key as PKCS#8 PEM (the form `openssl genpkey -algorithm ed25519` writes).
    pub fn generate_pem() -> anyhow::Result<String> {
        let pair = Ed25519KeyPair::generate().map_err(|_| anyhow::anyhow!("cannot generate an Ed25519 key"))?;
        let der = pair.to_pkcs8v1().map_err(|_| anyhow::anyhow!("cannot encode an Ed25519 key"))?;
        Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref())))
    }

    /// The signing key of `issuer` from the secrets folder.
    pub fn load(secrets: &Secrets, issuer: &str) -> anyhow::Result<Self> {
        let name = secrets::signing_key(issuer);
        let text = secrets.read(&name)?;
        let bad = || format!("{} is not an Ed25519 private key in PEM", secrets.path(&name).display());
        let der = pem::parse(&text).with_context(bad)?;
        let pair = Ed25519KeyPair::from_pkcs8(der.contents()).map_err(|_| anyhow::anyhow!(bad()))?;
        let public = pair.public_key().as_ref().to_vec();
        let key = EncodingKey::from_ed_pem(&text).with_context(bad)?;
        let thumbprint = public_jwk(&public, None).thumbprint(ThumbprintHash::SHA256)?;
        let kid = format!("{issuer}.{}", &thumbprint[..16]);
        Ok(Self { issuer: issuer.to_owned(), kid, key, public })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public half, as verifiers find it in the key set.
    pub fn public_jwk(&self) -> Jwk {
        public_jwk(&self.public, Some(self.kid.clone()))
    }

    /// A token for `subject` in `role`, for `audience`, valid for `ttl`.
    pub fn mint(&self, subject: &str, role: Role, audience: &str, ttl: Duration) -> anyhow::Result<String> {
        let now = now();
        self.sign(&Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            role,
            iat: now,
            exp: now + ttl.as_secs(),
        })
    }

    /// A token with exactly these claims (tests use it for expired and forged ones).
    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).context("cannot sign a token")
    }

    /// A token for a person: people's tokens are for the whole system.
    pub fn mint_person(&self, subject: &str, role: Role, ttl: Duration) -> anyhow::Result<String> {
        self.mint(subject, role, PEOPLE_AUDIENCE, ttl)
    }
}

fn public_jwk(public: &[u8], kid: Option<String>) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            key_id: kid,
            ..Default::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        }),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Checks tokens for one service: signed by a key of the system's key set, by the issuer that
/// key belongs to, for this service or the whole system, not expired, with a role that issuer
/// may grant.
pub struct Verifier {
    keys: HashMap<String, (String, DecodingKey)>,
    validation: Validation,
    /// The claims of tokens already found good, by the token's SHA-256. A client sends the
    /// same token with every request for as long as it lasts, and a signature check with the
    /// decoding around it costs about 50 µs (`shop bench` reports it): a repeated token is
    /// looked up instead. Only good tokens are kept, each until it expires (a token is
    /// immutable and the key set is read once at start), at most `VERIFIED_CAPACITY`.
    verified: moka::sync::Cache<[u8; 32], Claims>,
}

/// How many verified tokens a service remembers: about 200 bytes each.
const VERIFIED_CAPACITY: u64 = 10_000;

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl Verifier {
    /// The verifier of `service`, from the key set in the secrets folder.
    pub fn load(secrets: &Secrets, service: &str) -> anyhow::Result<Self> {
        let bytes = secrets.read(secrets::JWKS)?;
        let set: JwkSet = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a JSON Web Key Set", secrets.path(secrets::JWKS).display()))?;
        Self::new(&set, service)
    }

    pub fn new(set: &JwkSet, service: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else { anyhow::bail!("a key of the key set has no kid") };
            let Some((issuer, _)) = kid.split_once('.') else { anyhow::bail!("key {kid} does not name its issuer") };
            anyhow::ensure!(
                matches!(jwk.algorithm, AlgorithmParameters::OctetKeyPair(_)),
                "key {kid} is not an Ed25519 key"
            );
            keys.insert(kid.clone(), (issuer.to_owned(), DecodingKey::from_jwk(jwk)?));
        }
        anyhow::ensure!(!keys.is_empty(), "the key set has no key");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[PEOPLE_AUDIENCE, service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let verified = moka::sync::Cache::builder()
            .max_capacity(VERIFIED_CAPACITY)
            .time_to_live(super::PERSON_TOKEN_TTL + Duration::from_secs(validation.leeway))
            .build();
        Ok(Self { keys, validation, verified })
    }

    /// The claims of `token` if it is good; why not otherwise.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let id: [u8; 32] = digest.as_ref().try_into().expect("SHA-256 is 32 bytes");
        if let Some(claims) = self.verified.get(&id) {
            // As jsonwebtoken decides it: expired once `exp` is more than the leeway ago.
            if claims.exp.saturating_add(self.validation.leeway) >= now() {
                return Ok(claims);
            }
            self.verified.invalidate(&id);
            return Err(AuthError::invalid("the token has expired"));
        }
        let claims = self.check(token)?;
        self.verified.insert(id, claims.clone());
        Ok(claims)
    }

    /// The whole check: signature, key, issuer, audience, expiry, role.
    fn check(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::invalid("the token is malformed"))?;
        let kid = header.kid.ok_or_else(|| AuthError::invalid("the token names no key"))?;
        let (issuer, key) = self.keys.get(&kid).ok_or_else(|| AuthError::invalid("the token's key is unknown"))?;
        let mut validation = self.validation.clone();
        validation.set_issuer(&[issuer]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|error| AuthError::invalid(describe(&error)))?
            .claims;
        if !claims.role.issued_by(&claims.iss, &claims.sub) {
            return Err(AuthError::invalid("the token's issuer cannot grant its role"));
        }
        Ok(claims)
    }
}

/// Why a token was refused, in words that give nothing away.
fn describe(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::InvalidAudience => "the token is not for this service",
        ErrorKind::InvalidIssuer => "the token's issuer does not own its key",
        ErrorKind::InvalidSignature => "the token's signature is wrong",
        ErrorKind::InvalidAlgorithm => "the token's algorithm is not EdDSA",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => "the token lacks a claim",
        _ => "the token is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys {
        dir: std::path::PathBuf,
        secrets: Secrets,
    }

    impl Drop for Keys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fresh_keys() -> Keys {
        let dir = std::env::temp_dir().join(format!("shop-keys-{}", uuid::Uuid::new_v4()));
        let secrets = Secrets::new(&dir);
        secrets.generate(&["mobile", "order", "notification"]).unwrap();
        Keys { dir, secrets }
    }

    fn claims(iss: &str, sub: &str, aud: &str, role: Role, exp: u64) -> Claims {
        Claims { iss: iss.into(), sub: sub.into(), aud: aud.into(), role, iat: now(), exp }
    }

    #[test]
    fn a_good_token_verifies_and_says_who_holds_it() {
        let keys = fresh_keys();
        let mobile = SigningKey::load(&keys.secrets, "mobile").unwrap();
        let verifier = Verifier::load(&keys.secrets, "order").unwrap();
        let token = mobile.mint_person("ada@example.com", Role::Customer, Duration::from_secs(60)).unwrap();
        let claims = verifier.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("ada@example.com", Role::Customer));
        let order = SigningKey::load(&keys.secrets, "order").unwrap();
        let service = order.mint("order", Role::Service, "payment", Duration::from_secs(60)).unwrap();
        assert_eq!(Verifier::load(&keys.secrets, "payment").unwrap().verify(&service).unwrap().sub, "order");
    }

    #[test]
    fn expired_forged_misdirected_and_overreaching_tokens_are_refused() {
        let keys = fresh_keys();
        let verifier = Verifier::load(&keys.secrets, "payment").unwrap();
        let mobile = SigningKey::load(&keys.secrets, "mobile").unwrap();
        let order = SigningKey::load(&keys.secrets, "order").unwrap();
        let refused = |token: &str| verifier.verify(token).unwrap_err().to_string();

        let expired = mobile.sign(&claims("mobile", "a@b.co", "shop", Role::Customer, now() - 120)).unwrap();
        assert!(refused(&expired).contains("expired"));
        // A service may not sign for people, nor for another service, nor for a service elsewhere.
        let as_operator = order.sign(&claims("order", "operator", "shop", Role::Operator, now() + 60)).unwrap();
        assert!(refused(&as_operator).contains("cannot grant"));
        let as_notification =
            order.sign(&claims("notification", "notification", "payment", Role::Service, now() + 60)).unwrap();
        assert!(refused(&as_notification).contains("issuer"));
        let for_mobile = order.mint("order", Role::Service, "mobile", Duration::from_secs(60)).unwrap();
        assert!(refused(&for_mobile).contains("not for this service"));
        // The people issuer cannot mint service tokens.
        let service = mobile.sign(&claims("mobile", "mobile", "payment", Role::Service, now() + 60)).unwrap();
        assert!(refused(&service).contains("cannot grant"));

        // Another system's key, with the same kid: the signature is wrong.
        let other = fresh_keys();
        let stranger = SigningKey::load(&other.secrets, "mobile").unwrap();
        let token = stranger.mint_person("a@b.co", Role::Operator, Duration::from_secs(60)).unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let mut header: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head).unwrap()).unwrap();
        header["kid"] = mobile.public_jwk().common.key_id.unwrap().into();
        let forged = format!("{}.{rest}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()));
        assert!(refused(&forged).contains("signature"));
        assert!(refused(&token).contains("unknown"));

        // alg none, and garbage.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            rest.split('.').next().unwrap()
        );
        assert!(verifier.verify(&none).is_err());
        assert!(refused("not a token").contains("malformed"));
    }

    #[test]
    fn a_token_checked_once_is_remembered_only_while_it_is_good_and_only_as_itself() {
        let keys = fresh_keys();
        let mobile = SigningKey::load(&keys.secrets, "mobile").unwrap();
        let verifier = Verifier::load(&keys.secrets, "order").unwrap();
        let token = mobile.mint_person("ada@example.com", Role::Customer, Duration::from_secs(60)).unwrap();
        let first = verifier.verify(&token).unwrap();
        assert_eq!(verifier.verify(&token).unwrap(), first, "the remembered claims are the checked ones");
        // Any other text is checked afresh, however close to a remembered token.
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(verifier.verify(std::str::from_utf8(&altered).unwrap()).unwrap_err().to_string().contains("signature"));
        // Remembered claims that have since expired are refused, and forgotten.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let id: [u8; 32] = digest.as_ref().try_into().unwrap();
        verifier.verified.insert(id, Claims { exp: now() - 120, ..first });
        assert!(verifier.verify(&token).unwrap_err().to_string().contains("expired"));
        assert!(verifier.verified.get(&id).is_none());
    }
}
