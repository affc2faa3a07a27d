//! Printers for the `batch` API group.

use jiff::Timestamp;
use serde_json::Value;

use crate::duration::human_signed_duration;
use crate::format::{
    age, array_at, bool_ptr, condition_true, container_cells, format_label_selector, get, int_at, is_deleting, name,
    opt_bool, opt_int, opt_str, since, str_at, time_at,
};
use crate::{col, wide, Printer, AGE, CONTAINERS, IMAGES, NAME};

pub(crate) fn printer(kind: &str) -> Option<&'static Printer> {
    Some(match kind {
        "Job" => &JOB,
        "CronJob" => &CRON_JOB,
        _ => return None,
    })
}

// === Job ===

static JOB: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", "The number of pods which reached phase Succeeded."),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that should match the pod count."),
    ],
    job_cells,
);

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(0) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };

    let duration = match time_at(job, &["status", "startTime"]) {
        None => String::new(),
        Some(start) => {
            let end = time_at(job, &["status", "completionTime"]).unwrap_or(now);
            human_signed_duration(end.duration_since(start))
        }
    };

    let conditions = &["status", "conditions"];
    let status = if condition_true(job, conditions, "Complete") {
        "Complete"
    } else if condition_true(job, conditions, "Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if condition_true(job, conditions, "Suspended") {
        "Suspended"
    } else if condition_true(job, conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };

    let [names, images] = container_cells(job, &["spec", "template"]);
    vec![
        name(job),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(job, now),
        names,
        images,
        Value::from(format_label_selector(get(job, &["spec", "selector"]))),
    ]
}

// === CronJob ===

static CRON_JOB: Printer = Printer::new(
    &[
        NAME,
        col("Schedule", "string", "The schedule in Cron format."),
        col("Timezone", "string", "The time zone name for the given schedule."),
        col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions."),
        col("Active", "integer", "A list of pointers to currently running jobs."),
        col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that should match the pod count."),
    ],
    cron_job_cells,
);

fn cron_job_cells(cron_job: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match time_at(cron_job, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let [names, images] = container_cells(cron_job, &["spec", "jobTemplate", "spec", "template"]);
    vec![
        name(cron_job),
        Value::from(str_at(cron_job, &["spec", "schedule"])),
        Value::from(opt_str(cron_job, &["spec", "timeZone"]).unwrap_or("<none>")),
        Value::from(bool_ptr(opt_bool(cron_job, &["spec", "suspend"]))),
        Value::from(array_at(cron_job, &["status", "active"]).len()),
        Value::from(last_schedule),
        age(cron_job, now),
        names,
        images,
        Value::from(format_label_selector(get(cron_job, &["spec", "jobTemplate", "spec", "selector"]))),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::TablePrinter;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn cells(kind: &str, obj: &Value) -> Vec<Value> {
        printer(kind).unwrap().cells(obj, now())
    }

    fn job(status: Value) -> Value {
        json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:50:00Z"},
            "spec": {
                "completions": 1,
                "parallelism": 1,
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "9f1c"}},
                "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}
            },
            "status": status
        })
    }

    #[test]
    fn completed_job_shows_completions_and_duration() {
        let done = job(json!({
            "startTime": "2024-05-01T11:50:00Z",
            "completionTime": "2024-05-01T11:50:42Z",
            "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}
            ]
        }));
        assert_eq!(
            cells("Job", &done),
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("10m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=9f1c"),
            ]
        );
    }

    #[test]
    fn running_job_measures_duration_until_now() {
        let running = job(json!({"startTime": "2024-05-01T11:56:30Z", "active": 1}));
        assert_eq!(cells("Job", &running)[1..4], [json!("Running"), json!("0/1"), json!("3m30s")]);
        let unstarted = job(json!({}));
        assert_eq!(cells("Job", &unstarted)[3], json!(""));
    }

    #[test]
    fn job_status_precedence() {
        let failed = job(json!({"conditions": [
            {"type": "FailureTarget", "status": "True"},
            {"type": "Failed", "status": "True"}
        ]}));
        assert_eq!(cells("Job", &failed)[1], json!("Failed"));
        let suspended = job(json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(cells("Job", &suspended)[1], json!("Suspended"));
        let mut deleting = suspended.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(cells("Job", &deleting)[1], json!("Terminating"));
        let target = job(json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}));
        assert_eq!(cells("Job", &target)[1], json!("FailureTarget"));
    }

    #[test]
    fn job_without_completions_counts_parallelism() {
        let mut queue = job(json!({"succeeded": 2}));
        queue["spec"] = json!({"parallelism": 4, "template": {"spec": {"containers": []}}});
        assert_eq!(cells("Job", &queue)[2], json!("2/1 of 4"));
        queue["spec"]["parallelism"] = json!(1);
        assert_eq!(cells("Job", &queue)[2], json!("2/1"));
    }

    #[test]
    fn cron_job_row() {
        let cron = json!({
            "metadata": {"name": "backup", "creationTimestamp": "2024-04-24T12:00:00Z"},
            "spec": {
                "schedule": "0 */6 * * *",
                "suspend": false,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "backup", "image": "restic:0.16"}]}}}}
            },
            "status": {"active": [{"name": "backup-28571"}], "lastScheduleTime": "2024-05-01T06:00:00Z"}
        });
        assert_eq!(
            cells("CronJob", &cron),
            [
                json!("backup"),
                json!("0 */6 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("6h"),
                json!("7d"),
                json!("backup"),
                json!("restic:0.16"),
                json!("<none>"),
            ]
        );
        let never = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        assert_eq!(cells("CronJob", &never)[2..6], [json!("Etc/UTC"), json!("<unset>"), json!(0), json!("<none>")]);
    }
}
