//! The products the shop sells and their prices: the one source of both. The app shows what
//! `GET /products` answers, and an order's prices and total are computed from here, never
//! taken from the client. A handful, fixed: the catalogue is not what this system is about,
//! the journey of an order is.

use serde::Serialize;
use shop_events::Money;

/// A product on sale.
#[derive(Clone, Copy, Debug)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub price_cents: i64,
}

impl Product {
    pub fn price(&self) -> Money {
        Money::from_cents(self.price_cents).expect("catalogue prices are valid amounts")
    }
}

pub const CATALOGUE: [Product; 6] = [
    Product { sku: "TEA-01", name: "Darjeeling tea", description: "First flush, loose leaf, 100 g", price_cents: 1250 },
    Product {
        sku: "COF-02",
        name: "Coffee beans",
        description: "Single origin, medium roast, 250 g",
        price_cents: 1400,
    },
    Product { sku: "MUG-03", name: "Stoneware mug", description: "Hand glazed, 350 ml", price_cents: 990 },
    Product { sku: "HON-04", name: "Wildflower honey", description: "Raw, from one meadow, 450 g", price_cents: 875 },
    Product { sku: "CHO-05", name: "Dark chocolate", description: "72% cacao bar, 100 g", price_cents: 320 },
    Product {
        sku: "KET-06",
        name: "Gooseneck kettle",
        description: "Steel, 1 litre, for pour-over",
        price_cents: 3900,
    },
];

/// The product sold as `sku`, if the shop sells it.
pub fn find(sku: &str) -> Option<&'static Product> {
    CATALOGUE.iter().find(|product| product.sku == sku)
}

/// A product as `GET /products` shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductView {
    sku: &'static str,
    name: &'static str,
    description: &'static str,
    price: Money,
}

pub fn views() -> Vec<ProductView> {
    CATALOGUE
        .iter()
        .map(|p| ProductView { sku: p.sku, name: p.name, description: p.description, price: p.price() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_has_a_distinct_orderable_sku_and_a_price() {
        let skus: std::collections::BTreeSet<_> = CATALOGUE.iter().map(|p| p.sku).collect();
        assert_eq!(skus.len(), CATALOGUE.len());
        for product in CATALOGUE {
            assert!(product.sku.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{}", product.sku);
            assert!(product.price().cents() > 0, "{}", product.sku);
        }
        assert_eq!(find("TEA-01").map(|p| p.price().cents()), Some(1250));
        assert!(find("BOOK-7").is_none());
    }
}
