//! kube-rs watchers with kube-rs's default backoff, except after "410 Gone".
//!
//! A restarted API server starts with an empty watch cache and answers most
//! resumed watches with 410 (the resource version is too old). The watcher
//! handles that by relisting, but the backoff wrapped around it counts the
//! 410 as a failure and sleeps first, up to 30 s and twice, so a cluster's
//! edits could wait a minute or more after an API server came back. Here a
//! 410 passes the backoff as a success: the watcher relists at once. Every
//! other error still backs off, and callers still see the 410 (to log it).

use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use serde::de::DeserializeOwned;

/// What passes through the backoff: an expiry is not an error to it.
enum Step<K> {
    Event(Event<K>),
    Expired(watcher::Error),
}

/// Like `watcher(api, config).default_backoff()`, without backing off on 410.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config)
        .map(|item| match item {
            Ok(event) => Ok(Step::Event(event)),
            Err(e) if is_expired(&e) => Ok(Step::Expired(e)),
            Err(e) => Err(e),
        })
        .default_backoff()
        .map(|item| match item {
            Ok(Step::Event(event)) => Ok(event),
            Ok(Step::Expired(e)) | Err(e) => Err(e),
        })
}

/// The API server's "410 Gone": the watch's resource version expired.
pub fn is_expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn only_410_counts_as_expired() {
        let status = |code| Box::new(Status::failure("x", "Expired").with_code(code));
        assert!(is_expired(&watcher::Error::WatchError(status(410))));
        assert!(is_expired(&watcher::Error::WatchFailed(kube::Error::Api(
            status(410)
        ))));
        assert!(!is_expired(&watcher::Error::WatchError(status(500))));
        assert!(!is_expired(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(403))
        )));
    }
}
