//! Plays Fargate for `--runner ecs` (moto records RunTask but runs nothing): every runner task
//! moto holds is run here as ECS would, from what moto holds: the task definition's command
//! and its secret (read from Secrets Manager, as the execution role would) as the environment.
//! Only the source's address is changed: the spec names the mongo task's private address,
//! which must never be dialed here, so the fixture points it at the loopback source. The
//! runner's stdout and stderr go to its CloudWatch Logs stream as awslogs writes them; a
//! StopTask becomes SIGTERM; when the process ends the task is stopped in moto.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::SdkConfig;

/// A running fake.
pub struct FakeFargate {
    stop: Arc<AtomicBool>,
    /// When set, the next runner never starts: its task stops with this reason.
    pub fail_next: Arc<Mutex<Option<String>>>,
    /// Runner tasks started so far.
    pub started: Arc<Mutex<Vec<String>>>,
}

impl Drop for FakeFargate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl FakeFargate {
    /// Watches `cluster` for runner tasks; `source` is the loopback `host:port` of the source.
    pub fn start(conf: &SdkConfig, cluster: &str, source: &str) -> FakeFargate {
        let f = FakeFargate {
            stop: Arc::new(AtomicBool::new(false)),
            fail_next: Arc::new(Mutex::new(None)),
            started: Arc::new(Mutex::new(Vec::new())),
        };
        let (conf, cluster, source) = (conf.clone(), cluster.to_string(), source.to_string());
        let (stop, fail, started) = (f.stop.clone(), f.fail_next.clone(), f.started.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(watch(conf, cluster, source, stop, fail, started));
        });
        f
    }
}

/// Runs the service's one task as ECS would (moto starts none for a service): a Fargate task
/// in the service's group and network, so it has a private address like the real mongo task.
pub async fn service_task(conf: &SdkConfig, fx: &crate::world::Fixture) -> String {
    use aws_sdk_ecs::types::{AwsVpcConfiguration, LaunchType, NetworkConfiguration};
    // moto moves a task to STOPPED the first time it is described, unless told to leave
    // tasks as they are (then only StopTask stops one, as in ECS).
    let body = r#"{"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000000}}"#;
    let url = format!(
        "{}/moto-api/state-manager/set-transition",
        crate::common::moto()
    );
    let ok = std::process::Command::new("curl")
        .args([
            "-fsS",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(fx.subnets.clone()))
        .security_groups(&fx.task_sg)
        .build()
        .unwrap();
    let out = aws_sdk_ecs::Client::new(conf)
        .run_task()
        .cluster(&fx.cluster)
        .task_definition(&fx.task_definition_arn)
        .launch_type(LaunchType::Fargate)
        .group(format!("service:{}", fx.service))
        .started_by("ecs-svc/fixture")
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.tasks()[0].task_arn().unwrap().to_string()
}

async fn watch(
    conf: SdkConfig,
    cluster: String,
    source: String,
    stop: Arc<AtomicBool>,
    fail: Arc<Mutex<Option<String>>>,
    started: Arc<Mutex<Vec<String>>>,
) {
    let ecs = aws_sdk_ecs::Client::new(&conf);
    let mut seen: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(list) = ecs
            .list_tasks()
            .cluster(&cluster)
            .family("efs2atlas-runner")
            .send()
            .await
        else {
            continue;
        };
        for arn in list.task_arns() {
            if !seen.insert(arn.clone()) {
                continue;
            }
            started.lock().unwrap().push(arn.clone());
            let failing = fail.lock().unwrap().take();
            if let Some(reason) = failing {
                let _ = ecs
                    .stop_task()
                    .cluster(&cluster)
                    .task(arn)
                    .reason(reason)
                    .send()
                    .await;
                continue;
            }
            let (conf, cluster, source, arn) =
                (conf.clone(), cluster.clone(), source.clone(), arn.clone());
            tokio::spawn(async move { run_task(conf, cluster, source, arn).await });
        }
    }
}

/// Runs one runner task to its end.
async fn run_task(conf: SdkConfig, cluster: String, source: String, arn: String) {
    let ecs = aws_sdk_ecs::Client::new(&conf);
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let logs = aws_sdk_cloudwatchlogs::Client::new(&conf);
    let task = ecs
        .describe_tasks()
        .cluster(&cluster)
        .tasks(&arn)
        .send()
        .await
        .unwrap();
    let td_arn = task.tasks()[0].task_definition_arn().unwrap().to_string();
    let td = ecs
        .describe_task_definition()
        .task_definition(&td_arn)
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    let c = &td.container_definitions()[0];
    let command: Vec<String> = c.command().to_vec();
    let mut env: Vec<(String, String)> = Vec::new();
    for s in c.secrets() {
        let v = sm
            .get_secret_value()
            .secret_id(s.value_from())
            .send()
            .await
            .unwrap()
            .secret_string
            .unwrap();
        env.push((s.name().to_string(), loopback(&v, &source)));
    }
    let opts = c.log_configuration().unwrap().options().unwrap();
    let group = opts["awslogs-group"].clone();
    let stream = format!(
        "{}/{}/{}",
        opts["awslogs-stream-prefix"],
        c.name().unwrap(),
        arn.rsplit('/').next().unwrap()
    );
    let _ = logs.create_log_group().log_group_name(&group).send().await;
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name(&stream)
        .send()
        .await
        .unwrap();
    let mut cmd = crate::common::bin();
    cmd.args(&command)
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let lines: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let readers: Vec<_> = [
        Box::new(out) as Box<dyn std::io::Read + Send>,
        Box::new(err) as Box<dyn std::io::Read + Send>,
    ]
    .into_iter()
    .map(|r| {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    })
    .collect();
    let mut signalled = false;
    loop {
        ship(&logs, &group, &stream, &lines).await;
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if !signalled {
            let d = ecs
                .describe_tasks()
                .cluster(&cluster)
                .tasks(&arn)
                .send()
                .await;
            if d.is_ok_and(|d| d.tasks()[0].desired_status() == Some("STOPPED")) {
                // SAFETY: a plain kill(2) of the child this fixture started.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                signalled = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for r in readers {
        let _ = r.join();
    }
    ship(&logs, &group, &stream, &lines).await;
    let _ = ecs
        .stop_task()
        .cluster(&cluster)
        .task(&arn)
        .reason("Essential container in task exited")
        .send()
        .await;
}

/// Writes the lines gathered so far to the stream, as awslogs does.
async fn ship(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    lines: &Arc<Mutex<Vec<String>>>,
) {
    let batch: Vec<String> = std::mem::take(&mut *lines.lock().unwrap());
    if batch.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events: Vec<_> = batch
        .into_iter()
        .map(|m| {
            aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                .timestamp(now)
                .message(m)
                .build()
                .unwrap()
        })
        .collect();
    logs.put_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .set_log_events(Some(events))
        .send()
        .await
        .unwrap();
}

/// The spec with the source's host (the mongo task's private address) replaced by the
/// loopback source: the only change the fixture makes.
fn loopback(spec: &str, source: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(spec).unwrap();
    let uri = v["source"].as_str().unwrap().to_string();
    let (scheme, rest) = uri.split_once("://").unwrap();
    let (user, hostpart) = rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h));
    let end = hostpart.find(['/', '?']).unwrap_or(hostpart.len());
    let host = &hostpart[..end];
    assert!(
        host.starts_with("10.") || host.starts_with("172."),
        "the runner should be pointed at the mongo task's private address, got {host}"
    );
    let at = if user.is_empty() { "" } else { "@" };
    v["source"] = format!("{scheme}://{user}{at}{source}{}", &hostpart[end..]).into();
    v.to_string()
}
