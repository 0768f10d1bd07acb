//! Parsing a `POST /orders` body into a `NewOrder` whose every field is known good. The
//! customer is the signed-in one; each item's price comes from the catalogue (a price the
//! client sends must be that price, so a client showing a stale price learns of it).

use serde::Deserialize;
use shop_events::{Customer, LineItem, Money};

use crate::catalogue;

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;

/// A new order: who it is for (the signed-in customer) and what.
#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    pub customer: CustomerInput,
    /// 1 to 100 lines, each a product of the catalogue.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<ItemInput>,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    /// One line, at most 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The signed-in customer's email is the order's; if given, it must be that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// 5 to 20 digits, with spaces and `+-()`.
    pub phone: String,
}

#[derive(Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemInput {
    /// A product's `sku` (`GET /products`).
    pub sku: String,
    /// 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
    /// Ignored unless given; then it must be the catalogue's price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
}

impl NewOrder {
    /// The order `request` describes, placed by the customer signed in as `email`.
    pub fn parse(request: &CreateOrderRequest, email: &str) -> Result<NewOrder, String> {
        let c = &request.customer;
        if c.email.as_deref().is_some_and(|given| !given.trim().eq_ignore_ascii_case(email)) {
            return Err("customer.email must be the signed-in customer's email (or be left out)".into());
        }
        let customer = Customer::parse(&c.name, email, &c.phone).map_err(|e| e.to_string())?;
        if request.items.is_empty() {
            return Err("items must list at least one item".into());
        }
        if request.items.len() > MAX_ITEMS {
            return Err(format!("items may list at most {MAX_ITEMS} items"));
        }
        let mut items = Vec::with_capacity(request.items.len());
        let mut total = Money::default();
        for (i, item) in request.items.iter().enumerate() {
            let sku = item.sku.trim();
            let product = catalogue::find(sku).ok_or_else(|| {
                let shown: String = sku.chars().take(64).collect();
                format!("items[{i}].sku {shown:?} is not in the catalogue (GET /products)")
            })?;
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(format!("items[{i}].quantity must be between 1 and {MAX_QUANTITY}"));
            }
            let unit_price = product.price();
            if let Some(sent) = item.unit_price {
                if Money::from_decimal(sent).ok() != Some(unit_price) {
                    return Err(format!("items[{i}].unitPrice {sent} is not the price of {sku}, {unit_price}"));
                }
            }
            let quantity = item.quantity as u32;
            let line = unit_price.checked_mul(quantity).map_err(|e| format!("items[{i}]: {e}"))?;
            total = total.checked_add(line).map_err(|e| format!("total: {e}"))?;
            items.push(LineItem { sku: sku.to_owned(), quantity, unit_price });
        }
        Ok(NewOrder { customer, items, total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sku: &str, quantity: i64, price: Option<f64>) -> CreateOrderRequest {
        CreateOrderRequest {
            customer: CustomerInput { name: "Ada".into(), email: None, phone: "+44 1234 5678".into() },
            items: vec![ItemInput { sku: sku.into(), quantity, unit_price: price }],
        }
    }

    #[test]
    fn prices_and_the_total_come_from_the_catalogue() {
        let order = NewOrder::parse(&request("TEA-01", 3, None), "ada@example.com").unwrap();
        assert_eq!(order.total.cents(), 3750);
        assert_eq!(order.customer.email(), "ada@example.com");
        let order = NewOrder::parse(&request("TEA-01", 2, Some(12.5)), "ada@example.com").unwrap();
        assert_eq!(order.total.cents(), 2500);
    }

    #[test]
    fn a_price_set_by_the_client_or_an_unknown_sku_is_refused() {
        let cheap = NewOrder::parse(&request("TEA-01", 1000, Some(0.01)), "a@b.co").unwrap_err();
        assert!(cheap.contains("items[0].unitPrice"), "{cheap}");
        let unknown = NewOrder::parse(&request("BOOK-7", 1, None), "a@b.co").unwrap_err();
        assert!(unknown.contains("not in the catalogue"), "{unknown}");
    }

    #[test]
    fn bad_quantities_and_someone_elses_email_are_named() {
        assert!(NewOrder::parse(&request("TEA-01", 0, None), "a@b.co").unwrap_err().contains("items[0].quantity"));
        assert!(NewOrder::parse(&request("TEA-01", -2, None), "a@b.co").unwrap_err().contains("items[0].quantity"));
        let mut other = request("TEA-01", 1, None);
        other.customer.email = Some("victim@example.com".into());
        assert!(NewOrder::parse(&other, "a@b.co").unwrap_err().contains("customer.email"));
        other.customer.email = Some("A@B.co".into());
        assert!(NewOrder::parse(&other, "a@b.co").is_ok(), "emails compare case-insensitively");
    }

    #[test]
    fn an_order_no_mail_could_reach_is_refused_and_says_why() {
        // Signed in with an address no mail can be sent to (a token from before the check).
        for email in ["a..b@example.com", ".a@example.com", "user@[127.0.0.1]"] {
            let refused = NewOrder::parse(&request("TEA-01", 1, None), email).unwrap_err();
            assert!(refused.contains("customer.email") && refused.contains("doubled dot"), "{email}: {refused}");
        }
        let mut broken = request("TEA-01", 1, None);
        broken.customer.name = "Ada\u{2028}Lovelace".into();
        assert!(NewOrder::parse(&broken, "a@b.co").unwrap_err().contains("customer.name"));
        // What mail headers reserve is fine in a name, and international addresses are too.
        broken.customer.name = "Smith (Jr): Foo".into();
        assert!(NewOrder::parse(&broken, "user@münchen.de").is_ok());
    }
}
