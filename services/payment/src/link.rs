//! The secret a payment link carries: HMAC-SHA256 of the payment id under the payment link
//! key (256 bits, from the secrets folder). Whoever holds the link may see and pay that one
//! payment; nothing else derives from it, and a payment id alone opens nothing. The secret is
//! recomputed, not stored, so a payment opened again answers the same link.

use aws_lc_rs::hmac;
use base64::Engine;
use shop_events::PaymentId;

#[derive(Clone)]
pub struct LinkKey(hmac::Key);

impl LinkKey {
    pub fn new(key: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The secret of payment `id`'s link.
    pub fn secret(&self, id: PaymentId) -> String {
        let tag = hmac::sign(&self.0, id.to_string().as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `secret` is payment `id`'s, compared in constant time.
    pub fn opens(&self, id: PaymentId, secret: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(secret.trim()) else { return false };
        hmac::verify(&self.0, id.to_string().as_bytes(), &tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_own_payment_only() {
        let key = LinkKey::new(b"a key of the test");
        let (one, other) = (PaymentId::new(), PaymentId::new());
        let secret = key.secret(one);
        assert!(secret.len() >= 43, "256 bits");
        assert!(key.opens(one, &secret));
        assert!(!key.opens(other, &secret));
        assert!(!LinkKey::new(b"another key").opens(one, &secret));
        assert!(!key.opens(one, "") && !key.opens(one, "not base64!"));
    }
}
