//! A failure inside a service reaches its client as a generic 500 with a request id; its
//! detail (a storage error's text, say) goes only to the log.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use shop_platform::auth::TestKeys;
use shop_platform::http::{finish, routes, Api, ApiError};
use tower::ServiceExt;

#[tokio::test]
async fn a_storage_error_is_a_500_with_a_request_id_and_no_detail() {
    let keys = TestKeys::new();
    let router = finish(Api::new().routes(routes!(failing)), Vec::new(), Default::default(), &keys.web("order", &[]));
    let response = router.oneshot(Request::get("/fails").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let request_id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "internal error");
    assert_eq!(body["requestId"], request_id.as_str());
    assert!(!body.to_string().contains("secret"), "{body}");
}

/// Fails as storage does when its query names a column that is not there.
#[utoipa::path(get, path = "/fails", responses((status = 500, body = shop_platform::http::ErrorDoc)))]
async fn failing() -> Result<(), ApiError> {
    Err(sqlx::Error::ColumnNotFound("secret column customer_email".into()).into())
}
