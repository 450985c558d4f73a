//! What every payment consent's stored `details` document has, whatever it pays (one
//! domestic payment, or a file of them): the status time and reason, the debtor account
//! the TPP may name and the one the customer's authorisation fixes. The resource server
//! (create, replay, GET) and the authorization server (debtor pick, approve / refuse) run
//! one code path over this trait instead of one copy per payment kind.

use crate::StatusReason;
use crate::file_payment::FileConsentDetails;
use crate::payment::{AccountRef, PaymentConsentDetails};
use serde_json::Value;
use time::OffsetDateTime;

pub trait PaymentConsent: Sized {
    /// `ConsentRecord::kind` of this consent.
    const KIND: &'static str;

    fn from_value(v: &Value) -> Result<Self, String>;
    fn to_value(&self) -> Value;
    fn status_update_date_time(&self) -> OffsetDateTime;
    fn set_status_update_date_time(&mut self, at: OffsetDateTime);
    fn status_reason(&self) -> Option<&StatusReason>;
    fn set_status_reason(&mut self, reason: StatusReason);
    /// The account the TPP named to pay from, if it named one.
    fn named_debtor(&self) -> Option<&AccountRef>;
    /// Fixed by the customer's authorisation.
    fn set_debtor_account_id(&mut self, id: String);
    /// The currency the money leaves in; `None` while it is not known yet (a file consent
    /// before its file).
    fn currency(&self) -> Option<&str>;
}

/// The trait for a details type whose fields share these names (`status_update_date_time`,
/// `status_reason`, `initiation.debtor_account`, `debtor_account_id`); only the kind and
/// how the currency is known differ.
macro_rules! payment_consent {
    ($ty:ty, $kind:expr, |$d:ident| $currency:expr) => {
        impl PaymentConsent for $ty {
            const KIND: &'static str = $kind;

            fn from_value(v: &Value) -> Result<Self, String> {
                <$ty>::from_value(v)
            }
            fn to_value(&self) -> Value {
                <$ty>::to_value(self)
            }
            fn status_update_date_time(&self) -> OffsetDateTime {
                self.status_update_date_time
            }
            fn set_status_update_date_time(&mut self, at: OffsetDateTime) {
                self.status_update_date_time = at;
            }
            fn status_reason(&self) -> Option<&StatusReason> {
                self.status_reason.as_ref()
            }
            fn set_status_reason(&mut self, reason: StatusReason) {
                self.status_reason = Some(reason);
            }
            fn named_debtor(&self) -> Option<&AccountRef> {
                self.initiation.debtor_account.as_ref()
            }
            fn set_debtor_account_id(&mut self, id: String) {
                self.debtor_account_id = Some(id);
            }
            fn currency(&self) -> Option<&str> {
                let $d = self;
                $currency
            }
        }
    };
}

payment_consent!(PaymentConsentDetails, crate::KIND_DOMESTIC_PAYMENT, |d| {
    Some(&d.initiation.instructed_amount.currency)
});
// A file consent knows its currency once its file is uploaded.
payment_consent!(FileConsentDetails, crate::KIND_FILE_PAYMENT, |d| d
    .file
    .as_ref()
    .map(|f| f.currency.as_str()));
