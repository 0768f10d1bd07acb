//! `shop secrets generate` and `shop token`: the keys and credentials of a system, and a
//! bearer token for scripts and tests signed with that system's key for people, so that the
//! `shop up` using the same data folder accepts it.

use std::path::{Path, PathBuf};

use shop_events::service;
use shop_platform::auth::{customer_subject, Role, SigningKey, PEOPLE_ISSUER};
use shop_platform::secrets::Secrets;

use crate::cli::{SecretsArgs, TokenArgs};

/// The services that sign tokens, each with a key of its own: mobile for people, order and
/// notification for their calls to payment and mobile.
pub const ISSUERS: [&str; 3] = [service::MOBILE, service::ORDER, service::NOTIFICATION];

/// The secrets folder of a data folder, unless one is named.
pub fn secrets_of(data_dir: &Path, secrets_dir: Option<&PathBuf>) -> Secrets {
    Secrets::new(secrets_dir.cloned().unwrap_or_else(|| data_dir.join("secrets")))
}

/// Creates what is missing in `secrets`; says what it wrote.
pub fn ensure(secrets: &Secrets) -> anyhow::Result<()> {
    let written = secrets.generate(&ISSUERS)?;
    if !written.is_empty() {
        println!("Secrets: wrote {} in {}", written.join(", "), secrets.dir().display());
    }
    Ok(())
}

/// The secrets folder of a data folder, with what is missing made: what `shop up` does on
/// its data folder, and `shop bench` before it starts one there.
pub fn prepare(data_dir: &Path) -> anyhow::Result<Secrets> {
    let secrets = secrets_of(data_dir, None);
    ensure(&secrets)?;
    Ok(secrets)
}

pub fn generate(args: SecretsArgs) -> anyhow::Result<()> {
    let secrets = Secrets::new(args.dir);
    ensure(&secrets)?;
    println!("Secrets: everything is in {}", secrets.dir().display());
    Ok(())
}

pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let secrets = secrets_of(&args.data_dir, args.secrets_dir.as_ref());
    let subject = match (args.role, &args.email) {
        (Role::Customer, Some(email)) => customer_subject(
            &shop_events::Customer::parse_email(email)
                .map_err(|_| anyhow::anyhow!("--email {email:?} is not an address"))?,
        ),
        (Role::Customer, None) => anyhow::bail!("a customer's token needs --email"),
        (Role::Courier | Role::Operator, None) => args.role.as_str().to_owned(),
        (Role::Courier | Role::Operator, Some(_)) => anyhow::bail!("--email is for customers only"),
        (Role::Service, _) => anyhow::bail!("services sign their own tokens; --role is customer, courier or operator"),
    };
    let key = SigningKey::load(&secrets, PEOPLE_ISSUER)?;
    println!("{}", key.mint_person(&subject, args.role, args.ttl)?);
    Ok(())
}
