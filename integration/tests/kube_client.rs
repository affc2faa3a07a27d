//! The `kube` crate (kube-rs), which every other component uses to reach the
//! apiserver: typed CRUD, patches, and runtime watchers against the real binary.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use integration::ControlPlane;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config};

async fn client(cp: &ControlPlane) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.apiserver.kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "kube-rs"}},
        "data": {"v": value},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_crud_patch_and_server_side_apply() {
    let cp = ControlPlane::start().unwrap();
    let client = client(&cp).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api.create(&PostParams::default(), &cm("a", "1")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["v"], "1");
    let patched =
        api.patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"v": "2"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap()["v"], "2");
    let applied = api
        .patch(
            "b",
            &PatchParams::apply("test-manager"),
            &Patch::Apply(serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"v": "applied"},
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["v"], "applied");
    let list = api.list(&ListParams::default().labels("app=kube-rs")).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let err = api.create(&PostParams::default(), &cm("a", "x")).await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 409),
        other => panic!("expected a 409, got {other:?}"),
    }
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_sees_initial_state_and_live_changes() {
    let cp = ControlPlane::start().unwrap();
    let client = client(&cp).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("before", "1")).await.unwrap();
    // Both the list-then-watch and the streaming-list initial modes.
    for config in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
        let stream = watcher(api.clone(), config.labels("app=kube-rs")).applied_objects();
        let mut stream = Box::pin(stream);
        let first = tokio::time::timeout(Duration::from_secs(10), stream.try_next()).await.unwrap().unwrap().unwrap();
        assert_eq!(first.metadata.name.as_deref(), Some("before"));
        let name = format!("live-{}", uuid_suffix());
        let api2 = api.clone();
        let n2 = name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            api2.create(&PostParams::default(), &cm(&n2, "2")).await.unwrap();
        });
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(obj) = stream.next().await {
                let obj = obj.unwrap();
                if obj.metadata.name.as_deref() == Some(name.as_str()) {
                    return obj;
                }
            }
            panic!("stream ended")
        })
        .await
        .unwrap();
        assert_eq!(seen.data.unwrap()["v"], "2");
    }
}

fn uuid_suffix() -> String {
    format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000)
}
