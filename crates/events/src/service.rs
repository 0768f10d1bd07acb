//! The names of the seven services: the `source` of the events each produces, the issuer and
//! audience of the tokens they exchange, and the name each is started by (`shop serve order`).

pub const ORDER: &str = "order";
pub const PAYMENT: &str = "payment";
pub const DELIVERY: &str = "delivery";
pub const NOTIFICATION: &str = "notification";
pub const LOGGING: &str = "logging";
pub const MOBILE: &str = "mobile";
pub const EMAIL: &str = "email";

pub const ALL: [&str; 7] = [ORDER, PAYMENT, DELIVERY, NOTIFICATION, LOGGING, MOBILE, EMAIL];
