//! A payment's life: `created`, then `made` exactly once.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum PaymentStatus {
    Created,
    Made,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the payment is already made")]
pub struct AlreadyPaid;

impl PaymentStatus {
    /// The status's name, as serde spells it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(text: &str) -> Option<Self> {
        [PaymentStatus::Created, PaymentStatus::Made].into_iter().find(|s| s.as_str() == text)
    }

    pub fn pay(self) -> Result<PaymentStatus, AlreadyPaid> {
        match self {
            PaymentStatus::Created => Ok(PaymentStatus::Made),
            PaymentStatus::Made => Err(AlreadyPaid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_named_as_serde_names_it_and_parses_back() {
        for status in [PaymentStatus::Created, PaymentStatus::Made] {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
    }

    #[test]
    fn a_payment_is_made_once_and_never_again() {
        assert_eq!(PaymentStatus::Created.pay(), Ok(PaymentStatus::Made));
        assert_eq!(PaymentStatus::Made.pay(), Err(AlreadyPaid));
    }
}
