//! The worker's side of the gRPC protocol: a lazily connected channel with the run token on
//! every call, and retries while the coordinator is unreachable (it may be restarting).

use std::time::{Duration, Instant};

use common::backoff::Backoff;
use common::proto::coordinator_client::CoordinatorClient;
use tonic::codegen::InterceptedService;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone)]
pub(crate) struct TokenAuth {
    header: MetadataValue<tonic::metadata::Ascii>,
}

impl Interceptor for TokenAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut().insert("authorization", self.header.clone());
        Ok(req)
    }
}

pub(crate) type Client = CoordinatorClient<InterceptedService<Channel, TokenAuth>>;

/// A client for `address` (e.g. `http://127.0.0.1:7000`).
pub(crate) fn connect(address: &str, token: &str) -> anyhow::Result<Client> {
    let endpoint = Endpoint::from_shared(address.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60));
    let header = format!("Bearer {token}")
        .parse()
        .map_err(|_| anyhow::anyhow!("the run token is not valid ASCII"))?;
    Ok(CoordinatorClient::with_interceptor(endpoint.connect_lazy(), TokenAuth { header }))
}

/// Whether an RPC error means "coordinator not reachable right now" (retry) rather than a
/// refusal (give up).
pub(crate) fn is_transient(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

/// What a failed call means, for the message a worker exits with: the gRPC code and the
/// coordinator's (or the transport's) own words, with a reading of the code, so that a reply
/// too large to receive is not mistaken for an unreachable coordinator.
pub(crate) fn describe(call: &str, status: &Status) -> String {
    let reading = match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => {
            "coordinator unreachable"
        }
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            "a message exceeded the gRPC size limit"
        }
        tonic::Code::Unauthenticated => "the coordinator refused the run token",
        tonic::Code::PermissionDenied => "the coordinator does not know this worker",
        tonic::Code::Internal | tonic::Code::DataLoss => "the coordinator failed",
        _ => "the call failed",
    };
    let message = status.message().trim();
    let message = if message.is_empty() { "no message" } else { message };
    format!("{call}: {reading} (gRPC {:?}: {message})", status.code())
}

/// The wait between calls to an unreachable coordinator: 100 ms doubling up to 2 s.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Calls `f` until it succeeds, the error is not transient, or `patience` runs out.
pub(crate) async fn with_retry<T, F, Fut>(patience: Duration, f: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    with_retry_until(patience, || false, f).await
}

/// [`with_retry`], but gives up early, with the last error, once `stop()` says there is no
/// point waiting (the run has ended, or the coordinator that started this worker is gone).
pub(crate) async fn with_retry_until<T, F, Fut>(
    patience: Duration,
    stop: impl Fn() -> bool,
    mut f: F,
) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    let mut retry = 0;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(s) if is_transient(&s) && start.elapsed() < patience && !stop() => {
                tokio::time::sleep(RETRY_BACKOFF.delay(retry)).await;
                retry += 1;
            }
            Err(s) => return Err(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Would catch a lease reply too large to receive being reported as an unreachable
    /// coordinator (issue 15): the message names the size limit and keeps tonic's words.
    #[test]
    fn a_failed_call_says_what_it_was() {
        let big = Status::out_of_range(
            "Error, decoded message length too large: found 4700000 bytes, the limit is: 4194304 bytes",
        );
        let text = describe("lease", &big);
        assert!(text.contains("size limit") && text.contains("4700000"), "{text}");
        assert!(!text.contains("unreachable"), "{text}");
        let down = describe("lease", &Status::unavailable("tcp connect error"));
        assert!(down.contains("coordinator unreachable") && down.contains("tcp connect"), "{down}");
    }
}
