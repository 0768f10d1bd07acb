//! The products the app offers. A handful, fixed: the shop's catalogue is not what this
//! system is about, the journey of an order is.

use serde::Serialize;

#[derive(Serialize, Clone, Copy, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// In the shop's currency, with at most two decimals (what `POST /orders` takes).
    pub price: f64,
}

pub const CATALOGUE: [Product; 6] = [
    Product { sku: "TEA-01", name: "Darjeeling tea", description: "First flush, loose leaf, 100 g", price: 12.5 },
    Product { sku: "COF-02", name: "Coffee beans", description: "Single origin, medium roast, 250 g", price: 14.0 },
    Product { sku: "MUG-03", name: "Stoneware mug", description: "Hand glazed, 350 ml", price: 9.9 },
    Product { sku: "HON-04", name: "Wildflower honey", description: "Raw, from one meadow, 450 g", price: 8.75 },
    Product { sku: "CHO-05", name: "Dark chocolate", description: "72% cacao bar, 100 g", price: 3.2 },
    Product { sku: "KET-06", name: "Gooseneck kettle", description: "Steel, 1 litre, for pour-over", price: 39.0 },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_product_has_a_distinct_orderable_sku_and_a_price_in_cents() {
        let skus: std::collections::BTreeSet<_> = CATALOGUE.iter().map(|p| p.sku).collect();
        assert_eq!(skus.len(), CATALOGUE.len());
        for product in CATALOGUE {
            assert!(product.sku.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{}", product.sku);
            let cents = product.price * 100.0;
            assert!(product.price > 0.0 && (cents - cents.round()).abs() < 1e-9, "{}", product.sku);
        }
    }
}
