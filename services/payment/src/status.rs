//! A payment's life: `created`, then `made` exactly once.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PaymentStatus {
    Created,
    Made,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the payment is already made")]
pub struct AlreadyPaid;

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::Made => "made",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "created" => Some(PaymentStatus::Created),
            "made" => Some(PaymentStatus::Made),
            _ => None,
        }
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
    fn a_payment_is_made_once_and_never_again() {
        assert_eq!(PaymentStatus::Created.pay(), Ok(PaymentStatus::Made));
        assert_eq!(PaymentStatus::Made.pay(), Err(AlreadyPaid));
    }
}
