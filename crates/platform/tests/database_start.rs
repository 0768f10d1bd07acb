//! A service starting while its PostgreSQL cannot be reached (restarting, not up yet) waits for
//! it instead of exiting at once: `db::open` against an address where nothing listens yet, and
//! where a real PostgreSQL answers a little later (a forwarder of this test's own, started
//! once the open has been waiting).
//!
//! Needs PostgreSQL: `SHOP_TEST_DATABASE_URL=postgres://shop:shop@localhost:5432`
//! (`.ci/real-engine` starts one with `dev/postgres up`).

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
#[ignore = "needs PostgreSQL: SHOP_TEST_DATABASE_URL (.ci/real-engine)"]
async fn a_starting_service_waits_for_its_database_to_come_up() {
    let server = std::env::var("SHOP_TEST_DATABASE_URL").expect("SHOP_TEST_DATABASE_URL names a PostgreSQL server");
    let server = url::Url::parse(&server).expect("a postgres:// URL");
    let real = format!("{}:{}", server.host_str().unwrap(), server.port().unwrap_or(5432));
    let port = shop_platform::ports::unused_one().unwrap();
    let mut url = server.clone();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    url.set_path(&format!("/twait{}", uuid::Uuid::new_v4().simple()));

    let opening =
        tokio::spawn(async move { shop_platform::db::open(url.as_str(), sqlx::migrate::Migrator::DEFAULT).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!opening.is_finished(), "nothing listens yet: the open waits (it ended: {:?})", opening.await);

    // The database comes up at that address.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("the address is free");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let real = real.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(real).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    let pool = tokio::time::timeout(Duration::from_secs(60), opening)
        .await
        .expect("the open ends once the database is there")
        .unwrap()
        .expect("the database is opened");
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap();
    assert_eq!(one, 1);
}
