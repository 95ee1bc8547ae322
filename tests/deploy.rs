//! deploy/ is checked as far as this machine can: the alert rules by promtool, every YAML
//! file by a YAML parser, the Kubernetes pipeline by `weir check`, and the manifests against
//! each other (the probes hit the port the pipeline serves, the ConfigMap holds the files the
//! pipeline names). That the dashboard, the alerts and the autoscaler query metrics weir
//! really exports is checked against a running service in tests/telemetry.rs.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::fixtures::QUICKSTART_FILES;
use common::process::{output_ok, weir, weirtest};
use common::{repo, tool};

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

/// Every document of the YAML files under deploy/, parsed.
fn manifests() -> Vec<serde_json::Value> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path.display().to_string());
            }
        }
    }
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut args = vec!["load-yaml"];
    args.extend(files.iter().map(String::as_str));
    serde_json::from_str::<Vec<serde_json::Value>>(&weirtest(&args)).unwrap()
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    &found[0]["doc"]
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let output = Command::new(tool("WEIR_TEST_PROMTOOL"))
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"))
        .output()
        .expect("running promtool");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).unwrap();
    assert!(
        said.contains(&format!(
            "SUCCESS: {} rules found",
            rules.matches("- alert:").count()
        )),
        "{said}"
    );
}

#[test]
fn manifests_parse_and_agree_with_each_other() {
    let docs = manifests();
    let deployment = of_kind(&docs, "Deployment");
    let service = of_kind(&docs, "Service");
    let kustomization = of_kind(&docs, "Kustomization");
    of_kind(&docs, "ScaledObject");
    of_kind(&docs, "PodDisruptionBudget");
    let monitor = of_kind(&docs, "PodMonitor");

    // The probes and the Service reach the port the pipeline listens on.
    let pipeline = std::fs::read_to_string(deploy("kubernetes/pipeline/pipeline.toml")).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let port = &container["ports"][0];
    assert!(
        pipeline.contains(&format!("listen = \"0.0.0.0:{}\"", port["containerPort"])),
        "{port}"
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        assert_eq!(container[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], port["name"], "{probe}");
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port["name"]);
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"],
        port["name"]
    );
    // Nothing in the environment overrides the address the pipeline file gives.
    let env = container["env"].as_array().unwrap();
    assert!(env.iter().all(|v| v["name"] != "WEIR_LISTEN"), "{env:?}");
    let dockerfile = std::fs::read_to_string(deploy("docker/Dockerfile")).unwrap();
    assert!(!dockerfile.contains("ENV WEIR_LISTEN"));
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"],
        port["containerPort"].to_string()
    );

    // The ConfigMap holds every file, and the volume mounts each where the pipeline looks.
    let generated = &kustomization["configMapGenerator"][0];
    let keys: BTreeSet<String> = generated["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let f = f.as_str().unwrap();
            let (key, file) = f
                .split_once('=')
                .unwrap_or((f.rsplit('/').next().unwrap(), f));
            assert!(deploy(&format!("kubernetes/{file}")).exists(), "{file}");
            key.to_owned()
        })
        .collect();
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == generated["name"])
        .expect("the ConfigMap's volume");
    let mounted: BTreeSet<String> = volume["configMap"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let path = i["path"].as_str().unwrap();
            assert!(
                deploy(&format!("kubernetes/pipeline/{path}")).exists(),
                "{path} is not a file of the pipeline"
            );
            i["key"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(keys, mounted);

    // The Deployment's own environment and the Secret's keys fill every variable the
    // pipeline file uses, and it plans.
    let mut check = weir();
    check
        .args(["check", "--config"])
        .arg(deploy("kubernetes/pipeline/pipeline.toml"));
    for var in container["env"].as_array().unwrap() {
        check.env(
            var["name"].as_str().unwrap(),
            var["value"].as_str().unwrap(),
        );
    }
    check.envs([("KAFKA_USERNAME", "weir"), ("KAFKA_PASSWORD", "secret")]);
    let said = String::from_utf8(output_ok(&mut check)).unwrap();
    assert!(said.ends_with("ok\n"), "{said}");

    // The Kubernetes pipeline runs the same schema and SQL as the example.
    for file in QUICKSTART_FILES {
        let ours = std::fs::read_to_string(deploy(&format!("kubernetes/pipeline/{file}"))).unwrap();
        let example =
            std::fs::read_to_string(repo().join("examples/quickstart").join(file)).unwrap();
        assert_eq!(ours, example, "{file} differs from examples/quickstart");
    }
}

#[test]
fn the_dashboard_is_grafana_json_over_one_data_source() {
    let text = std::fs::read_to_string(deploy("grafana/weir.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_i64().unwrap()), "ids are unique");
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{panel}");
            assert!(
                target["expr"].as_str().unwrap().contains("$pipeline"),
                "{panel}"
            );
        }
    }
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "pipeline"]);
}
