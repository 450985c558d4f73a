//! Account information endpoints (UK OB Read/Write v4 `account-info-openapi`), each
//! enforcing the grant: the permission first (403), then the account (403 outside the
//! consent, 400 `UK.OBIE.Resource.NotFound` for an id the consent names but the bank
//! no longer holds), then the consent's transaction window and direction.
//!
//! Choice (ADR 0007): an account id that is not among the consent's accounts gets 403
//! whether or not it exists, so the API is no oracle for other customers' account ids.

use crate::AppState;
use crate::auth::{AuthError, Grant, PeerCertificate, Permission};
use crate::error::{ObError, ObErrorResponse, codes};
use crate::ob::{self, Envelope, Links, Meta};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use core_bank::{Account, Customer, Direction, EAT, TransactionQuery};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

pub const PREFIX: &str = "/open-banking/v4.0/aisp";

/// An authenticated, authorised caller: the grant, the bank customer behind it and the
/// accounts of that customer the consent covers.
pub struct Access {
    pub grant: Grant,
    pub customer: Customer,
    pub accounts: Vec<Account>,
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ObError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ObError> {
        let c = Credentials::from_parts(parts, state)?;
        let grant = state
            .verifier
            .verify(
                c.authorization,
                c.cert.as_deref(),
                c.dpop,
                parts.method.as_str(),
                &c.url,
            )
            .await?;
        state.throttle(&grant.client_id)?;
        let customer = state
            .bank
            .customer_for_subject(&grant.subject)
            .await?
            .ok_or_else(|| ObError::forbidden("the consent's customer holds no accounts here"))?;
        let accounts = state
            .bank
            .accounts(&customer.id)
            .await?
            .into_iter()
            .filter(|a| {
                grant
                    .account_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&a.id))
            })
            .collect();
        Ok(Self {
            grant,
            customer,
            accounts,
        })
    }
}

/// What a request presents for authentication: the single `Authorization` header, at
/// most one `DPoP` header, the connection's client certificate and the request's
/// absolute URL (DPoP `htu`).
pub(crate) struct Credentials<'a> {
    pub authorization: &'a str,
    pub dpop: Option<&'a str>,
    pub cert: Option<std::sync::Arc<[u8]>>,
    pub url: String,
}

impl<'a> Credentials<'a> {
    pub fn from_parts(parts: &'a Parts, state: &AppState) -> Result<Self, ObError> {
        let mut auth = parts.headers.get_all(header::AUTHORIZATION).iter();
        let authorization = match (auth.next(), auth.next()) {
            (None, _) => return Err(AuthError::MissingToken.into()),
            (Some(_), Some(_)) => {
                return Err(AuthError::InvalidRequest("more than one Authorization header").into());
            }
            (Some(v), None) => v
                .to_str()
                .map_err(|_| AuthError::InvalidToken("malformed Authorization header"))?,
        };
        let mut dpop = parts.headers.get_all("dpop").iter();
        let dpop = match (dpop.next(), dpop.next()) {
            (Some(_), Some(_)) => {
                return Err(AuthError::InvalidDpopProof("more than one DPoP header").into());
            }
            (Some(v), None) => Some(
                v.to_str()
                    .map_err(|_| AuthError::InvalidDpopProof("malformed DPoP header"))?,
            ),
            (None, _) => None,
        };
        let cert = parts
            .extensions
            .get::<PeerCertificate>()
            .map(|c| c.0.clone());
        Ok(Self {
            authorization,
            dpop,
            cert,
            url: format!("{}{}", state.base_url, parts.uri.path()),
        })
    }
}

impl Access {
    /// The Basic/Detail permission pair of one resource: at least one must be granted;
    /// `true` when Detail is.
    fn detail_level(&self, basic: Permission, detail: Permission) -> Result<bool, ObError> {
        self.require_any(&[basic, detail])?;
        Ok(self.grant.has(detail))
    }

    fn require_any(&self, ps: &[Permission]) -> Result<(), ObError> {
        if self.grant.has_any(ps) {
            Ok(())
        } else {
            let names: Vec<_> = ps.iter().map(|p| p.as_str()).collect();
            Err(ObError::forbidden(format!(
                "the consent does not grant {}",
                names.join(" or ")
            )))
        }
    }

    fn account(&self, id: &str) -> Result<&Account, ObError> {
        if let Some(a) = self.accounts.iter().find(|a| a.id == id) {
            return Ok(a);
        }
        if self
            .grant
            .account_ids
            .as_ref()
            .is_some_and(|ids| ids.contains(id))
        {
            return Err(ObError::resource_not_found("AccountId"));
        }
        Err(ObError::forbidden("the account is not part of the consent"))
    }

    fn ids(&self) -> Vec<String> {
        self.accounts.iter().map(|a| a.id.clone()).collect()
    }
}

pub(crate) fn self_link(state: &AppState, path: &str, query: Option<&str>) -> Links {
    let mut s = format!("{}{}", state.base_url, path);
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        s.push('?');
        s.push_str(q);
    }
    Links {
        self_: s,
        first: None,
        prev: None,
        next: None,
        last: None,
    }
}

fn respond<T: Serialize + ToSchema>(data: T, links: Links, meta: Meta) -> Response {
    let mut r = axum::Json(Envelope { data, links, meta }).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn simple<T: Serialize + ToSchema>(
    state: &AppState,
    path: &str,
    q: Option<&str>,
    data: T,
) -> Response {
    respond(
        data,
        self_link(state, path, q),
        Meta {
            total_pages: Some(1),
            ..Meta::default()
        },
    )
}

// ---- accounts ------------------------------------------------------------------------

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts", tag = "Accounts",
    responses(
        (status = 200, description = "Accounts the consent covers", body = Envelope<ob::AccountsData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_accounts(
    State(st): State<AppState>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    let detail = access.detail_level(
        Permission::ReadAccountsBasic,
        Permission::ReadAccountsDetail,
    )?;
    let data = ob::AccountsData {
        account: access
            .accounts
            .iter()
            .map(|a| ob::account(a, detail))
            .collect(),
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts"),
        q.as_deref(),
        data,
    ))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}", tag = "Accounts",
    params(("AccountId" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "One account", body = Envelope<ob::AccountsData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    let detail = access.detail_level(
        Permission::ReadAccountsBasic,
        Permission::ReadAccountsDetail,
    )?;
    let a = access.account(&id)?;
    let data = ob::AccountsData {
        account: vec![ob::account(a, detail)],
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts/{id}"),
        q.as_deref(),
        data,
    ))
}

// ---- balances ------------------------------------------------------------------------

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}/balances", tag = "Balances",
    params(("AccountId" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "Booked (ITBD) and available (ITAV) balances", body = Envelope<ob::BalancesData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account_balances(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    access.require_any(&[Permission::ReadBalances])?;
    let a = access.account(&id)?;
    let b = st.bank.balances(&a.id).await?;
    let data = ob::BalancesData {
        balance: ob::balances(&b).into(),
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts/{id}/balances"),
        q.as_deref(),
        data,
    ))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/balances", tag = "Balances",
    responses(
        (status = 200, description = "Balances of every account the consent covers", body = Envelope<ob::BalancesData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_balances(
    State(st): State<AppState>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    access.require_any(&[Permission::ReadBalances])?;
    let mut balance = Vec::with_capacity(access.accounts.len() * 2);
    for a in &access.accounts {
        balance.extend(ob::balances(&st.bank.balances(&a.id).await?));
    }
    Ok(simple(
        &st,
        &format!("{PREFIX}/balances"),
        q.as_deref(),
        ob::BalancesData { balance },
    ))
}

// ---- transactions --------------------------------------------------------------------

fn parse_booking(value: &str, end_of_day: bool, name: &str) -> Result<OffsetDateTime, ObError> {
    let invalid = || {
        ObError::bad_request(
            codes::FIELD_INVALID_DATE,
            format!("{name} is not an ISO 8601 date-time"),
            name,
        )
    };
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t);
    }
    let local = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(value, &local) {
        // No offset: the ASPSP's local time (OB convention).
        return Ok(t.assume_offset(EAT));
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(value, &day).map_err(|_| invalid())?;
    let t = if end_of_day {
        d.with_hms(23, 59, 59).map_err(|_| invalid())?
    } else {
        d.midnight()
    };
    Ok(t.assume_offset(EAT))
}

async fn transactions(
    st: &AppState,
    access: &Access,
    ids: Vec<String>,
    path: &str,
    raw_q: Option<&str>,
) -> Result<Response, ObError> {
    access.require_any(&[
        Permission::ReadTransactionsBasic,
        Permission::ReadTransactionsDetail,
    ])?;
    access.require_any(&[
        Permission::ReadTransactionsCredits,
        Permission::ReadTransactionsDebits,
    ])?;
    let g = &access.grant;
    let direction = match (
        g.has(Permission::ReadTransactionsCredits),
        g.has(Permission::ReadTransactionsDebits),
    ) {
        (true, false) => Some(Direction::Credit),
        (false, true) => Some(Direction::Debit),
        _ => None,
    };
    let detail = g.has(Permission::ReadTransactionsDetail);
    let pairs: Vec<(String, String)> = raw_q
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let param = |n: &str| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let from_q = param("fromBookingDateTime")
        .map(|v| parse_booking(v, false, "fromBookingDateTime"))
        .transpose()?;
    let to_q = param("toBookingDateTime")
        .map(|v| parse_booking(v, true, "toBookingDateTime"))
        .transpose()?;
    let page: usize = match param("page") {
        None => 1,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| *p >= 1 && *p <= 1_000_000)
            .ok_or_else(|| {
                ObError::bad_request(
                    codes::FIELD_INVALID,
                    "page must be a positive integer",
                    "page",
                )
            })?,
    };
    // The consent's window bounds whatever the TPP asks for.
    let from = match (from_q, g.transaction_from) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let to = match (to_q, g.transaction_to) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let size = st.page_size.max(1);
    let result = st
        .bank
        .transactions(
            &ids,
            &TransactionQuery {
                from,
                to,
                direction,
                offset: (page - 1) * size,
                limit: size,
            },
        )
        .await?;
    let pages = result.total.div_ceil(size).max(1);
    let link = |p: usize| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if let Some(v) = param("fromBookingDateTime") {
            s.append_pair("fromBookingDateTime", v);
        }
        if let Some(v) = param("toBookingDateTime") {
            s.append_pair("toBookingDateTime", v);
        }
        s.append_pair("page", &p.to_string());
        format!("{}{}?{}", st.base_url, path, s.finish())
    };
    let mut links = self_link(st, path, raw_q);
    links.first = Some(link(1));
    links.last = Some(link(pages));
    links.prev = (page > 1).then(|| link((page - 1).min(pages)));
    links.next = (page < pages).then(|| link(page + 1));
    let data = ob::TransactionsData {
        transaction: result
            .items
            .iter()
            .map(|t| ob::transaction(t, detail))
            .collect(),
    };
    let meta = Meta {
        total_pages: Some(u32::try_from(pages).unwrap_or(u32::MAX)),
        first_available_date_time: result.first_available.map(ob::dt),
        last_available_date_time: result.last_available.map(ob::dt),
    };
    Ok(respond(data, links, meta))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}/transactions", tag = "Transactions",
    params(("AccountId" = String, Path, description = "Account id"),
        ("fromBookingDateTime" = Option<String>, Query, description = "Inclusive lower bound (ISO 8601)"),
        ("toBookingDateTime" = Option<String>, Query, description = "Inclusive upper bound (ISO 8601)"),
        ("page" = Option<u32>, Query, description = "1-based page; follow Links.Next")),
    responses(
        (status = 200, description = "Booked transactions, newest first", body = Envelope<ob::TransactionsData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account_transactions(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    access.require_any(&[
        Permission::ReadTransactionsBasic,
        Permission::ReadTransactionsDetail,
    ])?;
    let a = access.account(&id)?.id.clone();
    transactions(
        &st,
        &access,
        vec![a],
        &format!("{PREFIX}/accounts/{id}/transactions"),
        q.as_deref(),
    )
    .await
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/transactions", tag = "Transactions",
    params(("fromBookingDateTime" = Option<String>, Query, description = "Inclusive lower bound (ISO 8601)"),
        ("toBookingDateTime" = Option<String>, Query, description = "Inclusive upper bound (ISO 8601)"),
        ("page" = Option<u32>, Query, description = "1-based page; follow Links.Next")),
    responses(
        (status = 200, description = "Booked transactions of every account the consent covers", body = Envelope<ob::TransactionsData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_transactions(
    State(st): State<AppState>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    let ids = access.ids();
    transactions(
        &st,
        &access,
        ids,
        &format!("{PREFIX}/transactions"),
        q.as_deref(),
    )
    .await
}

// ---- beneficiaries, standing orders, parties ------------------------------------------

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}/beneficiaries", tag = "Beneficiaries",
    params(("AccountId" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "Beneficiaries", body = Envelope<ob::BeneficiariesData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account_beneficiaries(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    let detail = access.detail_level(
        Permission::ReadBeneficiariesBasic,
        Permission::ReadBeneficiariesDetail,
    )?;
    let a = access.account(&id)?;
    let list = st.bank.beneficiaries(&a.id).await?;
    let data = ob::BeneficiariesData {
        beneficiary: list.iter().map(|b| ob::beneficiary(b, detail)).collect(),
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts/{id}/beneficiaries"),
        q.as_deref(),
        data,
    ))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}/standing-orders", tag = "Standing Orders",
    params(("AccountId" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "Standing orders", body = Envelope<ob::StandingOrdersData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account_standing_orders(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    let detail = access.detail_level(
        Permission::ReadStandingOrdersBasic,
        Permission::ReadStandingOrdersDetail,
    )?;
    let a = access.account(&id)?;
    let list = st.bank.standing_orders(&a.id).await?;
    let data = ob::StandingOrdersData {
        standing_order: list.iter().map(|s| ob::standing_order(s, detail)).collect(),
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts/{id}/standing-orders"),
        q.as_deref(),
        data,
    ))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/party", tag = "Parties",
    responses(
        (status = 200, description = "The customer (PSU) as a party", body = Envelope<ob::PartyData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_party(
    State(st): State<AppState>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    access.require_any(&[Permission::ReadPartyPSU])?;
    let p = st
        .bank
        .party(&access.customer.id)
        .await?
        .ok_or_else(ObError::internal)?;
    Ok(simple(
        &st,
        &format!("{PREFIX}/party"),
        q.as_deref(),
        ob::PartyData {
            party: ob::party(&p),
        },
    ))
}

#[utoipa::path(get, path = "/open-banking/v4.0/aisp/accounts/{AccountId}/parties", tag = "Parties",
    params(("AccountId" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "Parties that hold the account", body = Envelope<ob::PartiesData>),
        (status = 400, body = ObErrorResponse), (status = 401, body = ObErrorResponse),
        (status = 403, body = ObErrorResponse), (status = 406, body = ObErrorResponse),
        (status = 415, body = ObErrorResponse), (status = 429, body = ObErrorResponse),
        (status = 500, body = ObErrorResponse)))]
pub async fn get_account_parties(
    State(st): State<AppState>,
    Path(id): Path<String>,
    access: Access,
    RawQuery(q): RawQuery,
) -> Result<Response, ObError> {
    access.require_any(&[Permission::ReadParty])?;
    let a = access.account(&id)?;
    let list = st.bank.account_parties(&a.id).await?;
    let data = ob::PartiesData {
        party: list.iter().map(ob::party).collect(),
    };
    Ok(simple(
        &st,
        &format!("{PREFIX}/accounts/{id}/parties"),
        q.as_deref(),
        data,
    ))
}
