//! Which of the optional kinds this cluster serves, from discovery (`/apis`, then
//! `/apis/<group>/<version>` for the resources). An absent group is simply not read; Calico's
//! CRD group without its API server is an error that names the fix.

use std::collections::BTreeSet;

use kube::Client;

use crate::kinds::{Kind, CALICO_CRD_GROUP, CALICO_GROUP, KINDS};
use crate::SourceError;

/// The kinds to read: every always-served kind, and each optional kind whose group version
/// and resource discovery lists.
pub async fn served(client: &Client) -> Result<Vec<&'static Kind>, SourceError> {
    let groups = client.list_api_groups().await.map_err(SourceError::Discovery)?;
    let versions: BTreeSet<String> =
        groups.groups.iter().flat_map(|g| g.versions.iter().map(|v| v.group_version.clone())).collect();
    let calico = format!("{CALICO_GROUP}/v3");
    if !versions.contains(&calico) && versions.iter().any(|v| v.starts_with(&format!("{CALICO_CRD_GROUP}/"))) {
        return Err(SourceError::CalicoApiServerMissing);
    }
    let mut out: Vec<&'static Kind> = KINDS.iter().filter(|k| k.always).collect();
    let optional: BTreeSet<String> = KINDS.iter().filter(|k| !k.always).map(Kind::api_version).collect();
    for gv in optional.iter().filter(|gv| versions.contains(*gv)) {
        let list = client.list_api_group_resources(gv).await.map_err(SourceError::Discovery)?;
        let plurals: BTreeSet<&str> = list.resources.iter().map(|r| r.name.as_str()).collect();
        out.extend(KINDS.iter().filter(|k| !k.always && k.api_version() == *gv && plurals.contains(k.plural)));
    }
    out.sort_by_key(|k| KINDS.iter().position(|x| x == *k));
    Ok(out)
}
