//! The OpenAPI 3.1 document, generated from the handlers' annotations (utoipa), and the
//! vendored Swagger UI that serves it. `tests` fail if a routed path is missing from the
//! document or documented but not routed.

use crate::error::{ObErrorDetail, ObErrorResponse};
use crate::{consents, payments, routes};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, Required};
use utoipa::{Modify, OpenApi};

pub const SWAGGER_UI_PATH: &str = "/open-banking/v4.0/aisp/docs";
pub const OPENAPI_JSON_PATH: &str = "/open-banking/v4.0/aisp/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wekeza Account Information API",
        description = "UK Open Banking Read/Write v4-shaped account information endpoints. Every call needs a sender-constrained access token (mTLS `x5t#S256` or DPoP) in the Authorization header. Account-access consents are created, read and deleted with a client-credentials token (scope `accounts`); the account endpoints need the customer's authorization-code token and return only what its consent's permissions, accounts and transaction window allow.",
        version = "4.0.0"
    ),
    paths(
        consents::create_account_access_consent,
        consents::get_account_access_consent,
        consents::delete_account_access_consent,
        routes::get_accounts,
        routes::get_account,
        routes::get_account_balances,
        routes::get_balances,
        routes::get_account_transactions,
        routes::get_transactions,
        routes::get_account_beneficiaries,
        routes::get_account_standing_orders,
        routes::get_party,
        routes::get_account_parties,
        payments::create_domestic_payment_consent,
        payments::get_domestic_payment_consent,
        payments::get_funds_confirmation,
        payments::create_domestic_payment,
        payments::get_domestic_payment,
        payments::get_domestic_payment_details,
        crate::file_payments::create_file_payment_consent,
        crate::file_payments::get_file_payment_consent,
        crate::file_payments::upload_file,
        crate::file_payments::get_file,
        crate::file_payments::create_file_payment,
        crate::file_payments::get_file_payment,
        crate::file_payments::get_file_payment_details,
        crate::file_payments::get_report_file,
        crate::events::create_subscription,
        crate::events::list_subscriptions,
        crate::events::update_subscription,
        crate::events::delete_subscription,
        crate::events::get_deliveries,
        crate::events::redeliver,
        crate::events::poll_events,
        crate::alerts::put_thresholds,
        crate::alerts::get_thresholds,
        crate::alerts::delete_thresholds,
        crate::alerts::post_incoming_transfer,
    ),
    components(schemas(
        ObErrorResponse,
        ObErrorDetail,
        consents::ObReadConsent,
        consents::ObReadConsentResponse,
        payments::ObDomesticInitiation,
        payments::ObWriteDomesticConsent,
        payments::ObWriteDomesticConsentResponse,
        payments::ObWriteDomestic,
        payments::ObWriteDomesticResponse,
        payments::ObFundsConfirmationResponse,
        payments::ObPaymentDetailsResponse,
        crate::file_payments::ObFileInitiation,
        crate::file_payments::ObWriteFileConsent,
        crate::file_payments::ObWriteFileConsentResponse,
        crate::file_payments::ObWriteFile,
        crate::file_payments::ObWriteFileResponse,
        crate::file_payments::ObFilePaymentDetailsResponse,
        crate::file_payments::ObFileReport,
        crate::events::ObEventSubscriptionRequest,
        crate::events::ObEventSubscriptionResponse,
        crate::events::ObEventSubscriptionsResponse,
        crate::events::DeliveryLogResponse,
        crate::events::PollRequest,
        crate::events::PollResponse,
        crate::alerts::ObBalanceThresholdsRequest,
        crate::alerts::ObBalanceThresholdsResponse,
        crate::alerts::ObIncomingTransferRequest,
        crate::alerts::ObIncomingTransferResponse
    )),
    modifiers(&FapiHeaders)
)]
pub struct ApiDoc;

/// Adds the FAPI request headers and the security requirement to every operation.
struct FapiHeaders;

fn header(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::String,
        )))
        .build()
}

impl Modify for FapiHeaders {
    fn modify(&self, doc: &mut Doc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT (RFC 9068), sender-constrained; scheme Bearer with mTLS or DPoP with a DPoP proof")
                    .build(),
            ),
        );
        let headers = [
            header(
                "x-fapi-interaction-id",
                "RFC 4122 UUID; echoed, or generated when absent",
            ),
            header(
                "x-fapi-auth-date",
                "When the PSU last logged in to the TPP (HTTP-date)",
            ),
            header(
                "x-fapi-customer-ip-address",
                "The PSU's IP address, when the PSU is present",
            ),
            header("DPoP", "DPoP proof (RFC 9449) for DPoP-bound tokens"),
        ];
        let requirement =
            utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>("access_token", []);
        for item in doc.paths.paths.values_mut() {
            for op in [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .extend(headers.iter().cloned().map(utoipa::openapi::RefOr::T));
                op.security
                    .get_or_insert_with(Vec::new)
                    .push(requirement.clone());
            }
        }
    }
}

/// Swagger UI (assets compiled into the binary) and the JSON document.
pub fn swagger_router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    utoipa_swagger_ui::SwaggerUi::new(SWAGGER_UI_PATH)
        .url(OPENAPI_JSON_PATH, ApiDoc::openapi())
        .into()
}
