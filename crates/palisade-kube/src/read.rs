//! Reading a cluster once (what the read-only commands do): every served kind listed in pages,
//! all kinds at once, each object decoded as a file's would be.

use futures::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject, ListParams};
use kube::Client;
use palisade_load::manifest::Loaded;

use crate::decode::decode_loaded;
use crate::kinds::Kind;
use crate::{discover, message, SourceError};

/// Objects per list page (client-go's default).
pub const PAGE: u32 = 500;

/// How many kinds are listed at once.
pub const LISTS_AT_ONCE: usize = 2;

/// Lists every object of one kind, page by page.
pub async fn list_kind(client: &Client, kind: &'static Kind) -> Result<Vec<DynamicObject>, SourceError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &kind.api_resource());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| {
            let (code, message) = message(&e);
            SourceError::List { kind, code, message }
        })?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Discovers the served kinds and reads them all; any failure (a kind the role may not list,
/// say) is an error, since a partial cluster would give wrong verdicts.
pub async fn read(client: &Client) -> Result<Loaded, SourceError> {
    let kinds = discover::served(client).await?;
    // A few lists at a time: each concurrent request is a connection (and a TLS handshake).
    let lists: Vec<_> =
        stream::iter(kinds.iter().map(|k| list_kind(client, k))).buffered(LISTS_AT_ONCE).collect().await;
    let mut loaded = Loaded::default();
    for (kind, list) in kinds.iter().zip(lists) {
        for obj in list? {
            loaded.extend(decode_loaded(kind, obj));
        }
    }
    Ok(loaded)
}
