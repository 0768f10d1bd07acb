//! Parsing a `POST /orders` body into a `NewOrder` whose every field is known good.

use serde::Deserialize;
use shop_events::{Customer, LineItem, Money};

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    pub customer: CustomerInput,
    pub items: Vec<ItemInput>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: String,
    pub email: String,
    pub phone: String,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemInput {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub customer: Customer,
    pub items: Vec<LineItem>,
    pub total: Money,
}

impl NewOrder {
    pub fn parse(request: &CreateOrderRequest) -> Result<NewOrder, String> {
        let c = &request.customer;
        let customer = Customer::parse(&c.name, &c.email, &c.phone).map_err(|e| e.to_string())?;
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
            if sku.is_empty() || sku.len() > 64 || !sku.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!("items[{i}].sku must be 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(format!("items[{i}].quantity must be between 1 and {MAX_QUANTITY}"));
            }
            let unit_price = Money::from_decimal(item.unit_price).map_err(|e| format!("items[{i}].unitPrice: {e}"))?;
            if unit_price.cents() == 0 {
                return Err(format!("items[{i}].unitPrice must be more than 0"));
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

    fn request(quantity: i64, price: f64) -> CreateOrderRequest {
        CreateOrderRequest {
            customer: CustomerInput {
                name: "Ada".into(),
                email: "ada@example.com".into(),
                phone: "+44 1234 5678".into(),
            },
            items: vec![ItemInput { sku: "TEA-01".into(), quantity, unit_price: price }],
        }
    }

    #[test]
    fn a_good_order_has_its_total_in_exact_cents() {
        let order = NewOrder::parse(&request(3, 0.1)).unwrap();
        assert_eq!(order.total.cents(), 30);
    }

    #[test]
    fn bad_quantities_and_prices_are_named() {
        assert!(NewOrder::parse(&request(0, 1.0)).unwrap_err().contains("items[0].quantity"));
        assert!(NewOrder::parse(&request(-2, 1.0)).unwrap_err().contains("items[0].quantity"));
        assert!(NewOrder::parse(&request(1, -1.0)).unwrap_err().contains("items[0].unitPrice"));
        assert!(NewOrder::parse(&request(1, 1.001)).unwrap_err().contains("items[0].unitPrice"));
    }
}
