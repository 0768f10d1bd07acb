//! Values that appear in many events: identifiers, money, the customer and line items.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(
            Clone,
            Copy,
            Debug,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            Serialize,
            Deserialize,
            JsonSchema,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn parse(text: &str) -> Result<Self, uuid::Error> {
                Uuid::parse_str(text).map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::parse(text)
            }
        }
    };
}

id_type!(OrderId, "Identifies an order; the key of every Kafka record.");
id_type!(PaymentId, "Identifies a payment at the gateway.");

impl OrderId {
    /// The order id as a person reads and says it: its last 8 hex digits, upper case (the
    /// random end of the UUID; its start is the time). The pages show the same (`ui.shortId`).
    pub fn short(&self) -> String {
        let id = self.to_string();
        id[id.len() - 8..].to_uppercase()
    }
}

/// Identifies a parcel at the courier: `DLV-` and 12 upper-case hex digits.
// The digits are the random end of a UUIDv7, short enough to read out on the phone. Reading
// one (from a record, a path, a row) checks that form, which the schemas publish.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct DeliveryId(#[schemars(regex(pattern = r"^DLV-[0-9A-F]{12}$"))] String);

impl utoipa::PartialSchema for DeliveryId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^DLV-[0-9A-F]{12}$"))
            .description(Some("Identifies a parcel at the courier: `DLV-` and 12 upper-case hex digits."))
            .into()
    }
}

impl utoipa::ToSchema for DeliveryId {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a delivery id is DLV- and 12 hex digits")]
pub struct DeliveryIdError;

impl DeliveryId {
    pub fn new() -> Self {
        let random = Uuid::now_v7().simple().to_string();
        Self(format!("DLV-{}", random[20..].to_uppercase()))
    }

    pub fn parse(text: &str) -> Result<Self, DeliveryIdError> {
        let digits = text.strip_prefix("DLV-").ok_or(DeliveryIdError)?;
        if digits.len() == 12 && digits.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(DeliveryIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DeliveryId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DeliveryId {
    type Err = DeliveryIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An amount of money in cents. On the wire it is a decimal number with at most two
/// decimals (`12.5`), so no floating-point rounding ever reaches a stored amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    cents: i64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MoneyError {
    #[error("an amount cannot be negative")]
    Negative,
    #[error("an amount has at most two decimals")]
    TooPrecise,
    #[error("the amount is too large")]
    TooLarge,
}

impl Money {
    /// The largest amount the system accepts: ten million.
    pub const MAX_CENTS: i64 = 1_000_000_000;

    pub fn from_cents(cents: i64) -> Result<Self, MoneyError> {
        if cents < 0 {
            Err(MoneyError::Negative)
        } else if cents > Self::MAX_CENTS {
            Err(MoneyError::TooLarge)
        } else {
            Ok(Self { cents })
        }
    }

    pub fn from_decimal(amount: f64) -> Result<Self, MoneyError> {
        if !amount.is_finite() || amount > (Self::MAX_CENTS / 100) as f64 {
            return Err(MoneyError::TooLarge);
        }
        let scaled = amount * 100.0;
        let cents = scaled.round();
        if (scaled - cents).abs() > 1e-6 {
            return Err(MoneyError::TooPrecise);
        }
        Self::from_cents(cents as i64)
    }

    pub fn cents(self) -> i64 {
        self.cents
    }

    pub fn as_decimal(self) -> f64 {
        self.cents as f64 / 100.0
    }

    pub fn checked_mul(self, quantity: u32) -> Result<Self, MoneyError> {
        let cents = self.cents.checked_mul(i64::from(quantity)).ok_or(MoneyError::TooLarge)?;
        Self::from_cents(cents)
    }

    pub fn checked_add(self, other: Money) -> Result<Self, MoneyError> {
        let cents = self.cents.checked_add(other.cents).ok_or(MoneyError::TooLarge)?;
        Self::from_cents(cents)
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.cents / 100, self.cents % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_decimal())
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let amount = f64::deserialize(deserializer)?;
        Money::from_decimal(amount).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Money {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Money".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "maximum": Money::MAX_CENTS / 100,
            "multipleOf": 0.01,
            "description": "An amount with at most two decimals."
        })
    }
}

impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Number)
            .minimum(Some(0))
            .maximum(Some(Money::MAX_CENTS / 100))
            .multiple_of(Some(0.01))
            .description(Some("An amount with at most two decimals."))
            .into()
    }
}

impl utoipa::ToSchema for Money {}

/// Who ordered: the stage events carry it so the notification service can reach the
/// customer without asking anyone.
// There is no other way to make one than `parse`, and reading one (from a request, a record
// or a row) parses it: a `Customer` is always valid. (A doc line here would be published in
// the event schemas.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(pattern = r"^[0-9 +()-]+$")]
    phone: String,
}

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            name: String,
            email: String,
            phone: String,
        }
        let fields = Fields::deserialize(deserializer)?;
        Customer::parse(&fields.name, &fields.email, &fields.phone).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LineItem {
    pub sku: String,
    #[schemars(range(min = 1))]
    #[schema(minimum = 1)]
    pub quantity: u32,
    pub unit_price: Money,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_keeps_cents_exactly() {
        let money: Money = serde_json::from_str("19.99").unwrap();
        assert_eq!(money.cents(), 1999);
        assert_eq!(serde_json::to_string(&money).unwrap(), "19.99");
        assert_eq!(money.to_string(), "19.99");
    }

    #[test]
    fn delivery_ids_have_one_form() {
        let id = DeliveryId::new();
        assert_eq!(DeliveryId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(serde_json::from_value::<DeliveryId>(serde_json::to_value(&id).unwrap()).unwrap(), id);
        for bad in ["", "DLV-", "DLV-0000000000ab", "DLV-0000000000ABC", "XYZ-0000000000AB", "d-1"] {
            assert_eq!(DeliveryId::parse(bad), Err(DeliveryIdError), "{bad}");
            assert!(serde_json::from_value::<DeliveryId>(serde_json::json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_customer_is_read_only_through_parse() {
        let ada: Customer =
            serde_json::from_str(r#"{"name":" Ada ","email":"ada@example.com","phone":"+44 20 7946 0000"}"#).unwrap();
        assert_eq!((ada.name(), ada.email(), ada.phone()), ("Ada", "ada@example.com", "+44 20 7946 0000"));
        let bad =
            serde_json::from_str::<Customer>(r#"{"name":"Ada","email":"not an address","phone":"+44 20 7946 0000"}"#);
        assert!(bad.unwrap_err().to_string().contains("customer.email"));
        let extra = r#"{"name":"Ada","email":"ada@example.com","phone":"+44 20 7946 0000","admin":true}"#;
        assert!(serde_json::from_str::<Customer>(extra).is_err(), "unknown fields are refused");
    }

    #[test]
    fn every_address_and_name_accepted_can_be_put_on_a_mail() {
        let phone = "+44 20 7946 0000";
        for (name, email) in [
            ("Ada", "user@münchen.de"),
            ("Smith (Jr)", "ada@example.com"),
            ("Foo: Bar; [baz] @ \\ \"q\"", "o'brien+shop@example.co.uk"),
            ("Zoë Ünal", "δοκιμή@παράδειγμα.δοκιμή"),
        ] {
            let customer = Customer::parse(name, email, phone).unwrap_or_else(|e| panic!("{name} <{email}>: {e}"));
            let to = lettre::message::Mailbox::new(Some(customer.name().to_owned()), email.parse().unwrap());
            assert!(lettre::Message::builder()
                .from("shop@example.com".parse().unwrap())
                .to(to)
                .body(String::new())
                .is_ok());
        }
        let long = format!("{}@example.com", "a".repeat(65));
        for email in
            ["a..b@example.com", ".a@example.com", "a.@example.com", "user@[127.0.0.1]", "user@localhost", &long]
        {
            assert_eq!(Customer::parse("Ada", email, phone).unwrap_err(), CustomerError::Email, "{email}");
        }
        assert!(Customer::parse("Ada", &format!("{}@example.com", "a".repeat(64)), phone).is_ok());
        for name in ["Ada\u{2028}Lovelace", "Ada\u{2029}L", "Ada\nLovelace", "Ada\u{7}"] {
            assert_eq!(Customer::parse(name, "ada@example.com", phone).unwrap_err(), CustomerError::Name, "{name:?}");
        }
    }

    #[test]
    fn money_refuses_negative_and_fractional_cents() {
        assert_eq!(Money::from_decimal(-1.0), Err(MoneyError::Negative));
        assert_eq!(Money::from_decimal(0.001), Err(MoneyError::TooPrecise));
        assert_eq!(Money::from_decimal(f64::NAN), Err(MoneyError::TooLarge));
    }
}

/// Why a customer's details were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CustomerError {
    #[error("customer.name must be 1 to 100 characters on one line")]
    Name,
    #[error(
        "customer.email must be a mailbox on a domain name, like name@example.com or name@münchen.de: \
         at most 64 characters before the @, no leading, trailing or doubled dot, no address literal"
    )]
    Email,
    #[error("customer.phone must have 5 to 20 digits (spaces, +, -, parentheses allowed)")]
    Phone,
}

impl Customer {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// As given, trimmed (case kept: it is how the customer writes it).
    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn phone(&self) -> &str {
        &self.phone
    }

    /// Checks the details at the edge; past it a `Customer` is known to be reachable: every
    /// name and address accepted here can be put on a mail (`notification`) and delivered.
    pub fn parse(name: &str, email: &str, phone: &str) -> Result<Customer, CustomerError> {
        let name = name.trim();
        // Any printable text, punctuation included ("Smith (Jr)", "Foo: Bar"): the mail quotes
        // or encodes it. Not control characters nor the Unicode line and paragraph separators,
        // which would break a header or a push's single line.
        let breaks_a_line = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(breaks_a_line) {
            return Err(CustomerError::Name);
        }
        let email = Self::parse_email(email)?;
        let phone = phone.trim();
        let digits = phone.chars().filter(char::is_ascii_digit).count();
        let allowed = phone.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
        if !allowed || !(5..=20).contains(&digits) {
            return Err(CustomerError::Phone);
        }
        Ok(Customer { name: name.to_owned(), email, phone: phone.to_owned() })
    }

    /// An email address a customer can be reached at, trimmed: a mailbox on a domain name, as
    /// SMTP (RFC 5321, with RFC 6531's international addresses: `user@münchen.de`) and the
    /// mail library that sends the mail (lettre) both take it. So a dot-atom or quoted local part
    /// of at most 64 octets (no leading, trailing or doubled dot), a domain name with a dot
    /// (no address literal such as `[127.0.0.1]`), 254 octets in all.
    pub fn parse_email(email: &str) -> Result<String, CustomerError> {
        let email = email.trim();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.rsplit_once('@').is_some_and(|(local, domain)| {
                local.len() <= 64
                    && domain.contains('.')
                    && !domain.starts_with('[')
                    && lettre::Address::new(local, domain).is_ok()
            });
        if valid {
            Ok(email.to_owned())
        } else {
            Err(CustomerError::Email)
        }
    }
}
