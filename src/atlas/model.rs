//! What efs2atlas reads and writes through the Admin API, in its own types, and the calls
//! themselves. Shapes follow Atlas's published OpenAPI (v2): clusters at resource version
//! 2024-08-05, Flex clusters at 2024-11-13, the access list and database users at 2023-01-01.

use reqwest::Method;
use serde_json::{Value, json};

use super::{Atlas, Call};
use crate::error::{Error, Result};
use crate::uri::percent_encode;
pub use crate::world::atlas::{AccessEntry, Cluster, DbUser, NewUser};

const CLUSTERS: &str = "2024-08-05";
const FLEX: &str = "2024-11-13";
const PROJECT: &str = "2023-01-01";

fn cluster_from(v: &Value, flex: bool) -> Cluster {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
    let tier = if flex {
        "FLEX".to_string()
    } else {
        s("/replicationSpecs/0/regionConfigs/0/electableSpecs/instanceSize")
            .or_else(|| s("/providerSettings/instanceSizeName"))
            .unwrap_or_else(|| "?".into())
    };
    Cluster {
        name: s("/name").unwrap_or_default(),
        tier,
        version: s("/mongoDBVersion").unwrap_or_default(),
        state: s("/stateName").unwrap_or_default(),
        paused: v["paused"].as_bool().unwrap_or(false),
        srv: s("/connectionStrings/standardSrv"),
        private_endpoints: v
            .pointer("/connectionStrings/privateEndpoint")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
    }
}

fn results(v: &Value) -> &[Value] {
    v["results"].as_array().map_or(&[], Vec::as_slice)
}

impl Atlas {
    fn call<'a>(
        &self,
        method: Method,
        path: &str,
        version: &'static str,
        what: &'a str,
    ) -> Call<'a> {
        Call {
            method,
            path: format!("/groups/{}{path}", self.project),
            version,
            body: None,
            what,
        }
    }

    /// The cluster `name`: a dedicated or free cluster, else a Flex cluster (Atlas serves
    /// those under their own path since 2025).
    pub async fn cluster(&self, name: &str) -> Result<Cluster> {
        let what = format!("reading cluster {name}");
        let path = format!("/clusters/{}", percent_encode(name));
        let c = self.call(Method::GET, &path, CLUSTERS, &what);
        match self.send(&c).await {
            Ok(v) => return Ok(cluster_from(&v, false)),
            Err(e) if matches!(e.status, 400 | 404) => {}
            Err(e) => return Err(self.fail(&c, e)),
        }
        let path = format!("/flexClusters/{}", percent_encode(name));
        let f = self.call(Method::GET, &path, FLEX, &what);
        match self.send(&f).await {
            Ok(v) => Ok(cluster_from(&v, true)),
            Err(e) if e.status == 404 => Err(Error::not_found(format!(
                "Atlas project {} has no cluster named '{name}' (Atlas said: {}); check --atlas-cluster (the name shown in Atlas under Database > Clusters)",
                self.project,
                e.said()
            ))),
            Err(e) => Err(self.fail(&f, e)),
        }
    }

    /// The project's IP access list.
    pub async fn access_list(&self) -> Result<Vec<AccessEntry>> {
        let v = self
            .request(self.call(
                Method::GET,
                "/accessList?itemsPerPage=500",
                PROJECT,
                "reading the IP access list",
            ))
            .await?;
        Ok(results(&v)
            .iter()
            .map(|e| AccessEntry {
                cidr: e["cidrBlock"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| e["ipAddress"].as_str().map(|ip| format!("{ip}/32")))
                    .unwrap_or_default(),
                comment: e["comment"].as_str().unwrap_or_default().to_string(),
                delete_after: e["deleteAfterDate"].as_str().map(str::to_string),
            })
            .collect())
    }

    /// Adds one access-list entry (Atlas asks for one POST at a time); one already there is
    /// fine.
    pub async fn add_access(&self, e: &AccessEntry) -> Result<()> {
        let what = format!("adding {} to the IP access list", e.cidr);
        let mut entry = json!({"cidrBlock": e.cidr, "comment": e.comment});
        if let Some(d) = &e.delete_after {
            entry["deleteAfterDate"] = json!(d);
        }
        let mut c = self.call(Method::POST, "/accessList", PROJECT, &what);
        c.body = Some(json!([entry]));
        match self.send(&c).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == 409 => Ok(()),
            Err(e) => Err(self.fail(&c, e)),
        }
    }

    /// Removes an access-list entry; one already gone is fine.
    pub async fn remove_access(&self, cidr: &str) -> Result<()> {
        let what = format!("removing {cidr} from the IP access list");
        let path = format!("/accessList/{}", percent_encode(cidr));
        let c = self.call(Method::DELETE, &path, PROJECT, &what);
        match self.send(&c).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == 404 => Ok(()),
            Err(e) => Err(self.fail(&c, e)),
        }
    }

    /// The project's database users.
    pub async fn users(&self) -> Result<Vec<DbUser>> {
        let v = self
            .request(self.call(
                Method::GET,
                "/databaseUsers?itemsPerPage=500",
                PROJECT,
                "reading the database users",
            ))
            .await?;
        Ok(results(&v)
            .iter()
            .map(|u| DbUser {
                name: u["username"].as_str().unwrap_or_default().to_string(),
                roles: u["roles"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .map(|r| {
                        format!(
                            "{}@{}",
                            r["roleName"].as_str().unwrap_or("?"),
                            r["databaseName"].as_str().unwrap_or("?")
                        )
                    })
                    .collect(),
                clusters: u["scopes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
                    .iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_string))
                    .collect(),
                delete_after: u["deleteAfterDate"].as_str().map(str::to_string),
            })
            .collect())
    }

    /// Creates `u` (SCRAM, defined in `admin` as Atlas users are); when it exists already
    /// (a run resumed after the create), its roles, scope and password are set again.
    pub async fn put_user(&self, u: &NewUser) -> Result<()> {
        let roles: Vec<Value> = u
            .roles
            .iter()
            .map(|(r, d)| json!({"roleName": r, "databaseName": d}))
            .collect();
        let mut body = json!({
            "databaseName": "admin",
            "username": u.name,
            "password": u.password.expose(),
            "roles": roles,
            "scopes": [{"name": u.cluster, "type": "CLUSTER"}],
            "groupId": self.project,
        });
        if let Some(d) = &u.delete_after {
            body["deleteAfterDate"] = json!(d);
        }
        let what = format!("creating database user {}", u.name);
        let mut c = self.call(Method::POST, "/databaseUsers", PROJECT, &what);
        c.body = Some(body.clone());
        match self.send(&c).await {
            Ok(_) => return Ok(()),
            Err(e) if e.status == 409 => {}
            Err(e) => return Err(self.fail(&c, e)),
        }
        let what = format!("updating database user {}", u.name);
        let path = format!("/databaseUsers/admin/{}", percent_encode(&u.name));
        let mut p = self.call(Method::PATCH, &path, PROJECT, &what);
        p.body = Some(body);
        self.request(p).await.map(drop)
    }

    /// Deletes the user `name`; one already gone is fine.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let what = format!("deleting database user {name}");
        let path = format!("/databaseUsers/admin/{}", percent_encode(name));
        let c = self.call(Method::DELETE, &path, PROJECT, &what);
        match self.send(&c).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == 404 => Ok(()),
            Err(e) => Err(self.fail(&c, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_reads_from_atlas_shapes() {
        let m0 = json!({
            "name": "c0", "mongoDBVersion": "8.0.4", "stateName": "IDLE", "paused": false,
            "replicationSpecs": [{"regionConfigs": [{"providerName": "TENANT",
                "backingProviderName": "AWS", "electableSpecs": {"instanceSize": "M0"}}]}],
            "connectionStrings": {"standardSrv": "mongodb+srv://c0.ab12c.mongodb.net"}
        });
        let c = cluster_from(&m0, false);
        assert_eq!(c.tier, "M0");
        assert!(c.shared());
        assert_eq!(c.limits().unwrap().storage, 512 * 1024 * 1024);
        assert_eq!(c.srv.as_deref(), Some("mongodb+srv://c0.ab12c.mongodb.net"));
        let flex = cluster_from(&json!({"name": "f", "stateName": "IDLE"}), true);
        assert_eq!(flex.limits().unwrap().ops_per_sec, 500);
        let m10 = json!({"replicationSpecs": [{"regionConfigs": [{"electableSpecs": {"instanceSize": "M10"}}]}]});
        assert!(cluster_from(&m10, false).limits().is_none());
    }
}
