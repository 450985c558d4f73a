//! What a module records: checks (each with a result and the requirement it enforces) and
//! the evidence behind them (requests sent, statuses and error codes received).

use crate::tpp::Reply;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Skipped,
    Warning,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Skipped => "SKIPPED",
            Status::Warning => "WARNING",
            Status::Fail => "FAIL",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub status: Status,
    pub requirement: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    pub step: String,
    pub request: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Default)]
pub struct Log {
    pub checks: Vec<Check>,
    pub evidence: Vec<Evidence>,
    pub notes: Vec<String>,
    /// Set when the module decides it cannot run (the suite's `fireTestSkipped`).
    pub skipped: Option<String>,
}

impl Log {
    fn push(&mut self, status: Status, req: &str, msg: impl Into<String>) {
        self.checks.push(Check {
            status,
            requirement: req.to_owned(),
            message: msg.into(),
        });
    }

    pub fn pass(&mut self, req: &str, msg: impl Into<String>) {
        self.push(Status::Pass, req, msg);
    }

    pub fn fail(&mut self, req: &str, msg: impl Into<String>) {
        self.push(Status::Fail, req, msg);
    }

    pub fn warn(&mut self, req: &str, msg: impl Into<String>) {
        self.push(Status::Warning, req, msg);
    }

    /// PASS when `ok`, FAIL otherwise; returns `ok`.
    pub fn check(&mut self, ok: bool, req: &str, msg: impl Into<String>) -> bool {
        self.push(if ok { Status::Pass } else { Status::Fail }, req, msg);
        ok
    }

    /// PASS when `ok`, WARNING otherwise; returns `ok`.
    pub fn should(&mut self, ok: bool, req: &str, msg: impl Into<String>) -> bool {
        self.push(if ok { Status::Pass } else { Status::Warning }, req, msg);
        ok
    }

    pub fn note(&mut self, msg: impl Into<String>) {
        self.notes.push(msg.into());
    }

    pub fn skip(&mut self, why: impl Into<String>) {
        self.skipped = Some(why.into());
    }

    /// Record an endpoint reply as evidence.
    pub fn reply(&mut self, step: &str, request: impl Into<String>, r: &Reply) {
        let desc = r
            .str("error_description")
            .map(|d| d.chars().take(160).collect::<String>());
        self.evidence.push(Evidence {
            step: step.to_owned(),
            request: request.into(),
            status: Some(r.status.as_u16()),
            error: r.str("error").map(str::to_owned),
            detail: desc,
        });
    }

    pub fn evidence(
        &mut self,
        step: &str,
        request: impl Into<String>,
        status: Option<u16>,
        error: Option<String>,
        detail: Option<String>,
    ) {
        self.evidence.push(Evidence {
            step: step.to_owned(),
            request: request.into(),
            status,
            error,
            detail,
        });
    }

    /// The module's overall result: its worst check (FAIL > WARNING > PASS).
    pub fn status(&self) -> Status {
        if self.checks.iter().any(|c| c.status == Status::Fail) {
            return Status::Fail;
        }
        if self.skipped.is_some() {
            return Status::Skipped;
        }
        if self.checks.iter().any(|c| c.status == Status::Warning) {
            return Status::Warning;
        }
        if self.checks.is_empty() {
            // A module that checked nothing proves nothing.
            return Status::Fail;
        }
        Status::Pass
    }
}
