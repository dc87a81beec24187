"""Render's event types, as the spec and pulumi-render name them.

`WEBHOOK_EVENT_TYPES` is the `EventFilterItem` enum of `render:webhooks:Webhook`
(cloudy-sky-software/pulumi-render sdk/python/pulumi_render/webhooks/_enums.py, the same list as
the `type` enum of GET /events/{eventId} in provider/cmd/pulumi-gen-render/openapi.yml).
No imports: settings validation reads it.
"""

from __future__ import annotations

from typing import Final

WEBHOOK_EVENT_TYPES: Final = frozenset(
    [
        "autoscaling_config_changed",
        "autoscaling_ended",
        "autoscaling_started",
        "branch_deleted",
        "build_ended",
        "build_started",
        "commit_ignored",
        "cron_job_run_ended",
        "cron_job_run_started",
        "deploy_ended",
        "deploy_started",
        "disk_created",
        "disk_updated",
        "disk_deleted",
        "image_pull_failed",
        "instance_count_changed",
        "job_run_ended",
        "maintenance_mode_enabled",
        "maintenance_mode_uri_updated",
        "maintenance_ended",
        "maintenance_started",
        "pipeline_minutes_exhausted",
        "plan_changed",
        "pre_deploy_ended",
        "pre_deploy_started",
        "server_available",
        "server_failed",
        "server_hardware_failure",
        "server_restarted",
        "server_unhealthy",
        "service_resumed",
        "service_suspended",
        "zero_downtime_redeploy_ended",
        "zero_downtime_redeploy_started",
        "edge_cache_enabled",
        "edge_cache_disabled",
        "edge_cache_purged",
        "postgres_available",
        "postgres_backup_completed",
        "postgres_backup_failed",
        "postgres_backup_started",
        "postgres_cluster_leader_changed",
        "postgres_created",
        "postgres_disk_size_changed",
        "postgres_ha_status_changed",
        "postgres_restarted",
        "postgres_unavailable",
        "postgres_upgrade_failed",
        "postgres_upgrade_started",
        "postgres_upgrade_succeeded",
        "postgres_restore_failed",
        "postgres_restore_succeeded",
        "postgres_read_replicas_changed",
        "postgres_pitr_checkpoint_started",
        "postgres_pitr_checkpoint_failed",
        "postgres_pitr_checkpoint_completed",
        "postgres_read_replica_stale",
        "postgres_wal_archive_failed",
        "key_value_available",
        "key_value_config_restart",
        "key_value_unhealthy",
    ]
)

# What `monitor` shows as "recent events": an instance in trouble or coming back.
TROUBLE_EVENTS: Final = frozenset(
    {"server_failed", "server_unhealthy", "server_hardware_failure", "image_pull_failed"}
)
RECOVERY_EVENTS: Final = frozenset({"server_available", "server_restarted", "service_resumed"})
SHOWN_EVENTS: Final = TROUBLE_EVENTS | RECOVERY_EVENTS | {"service_suspended", "deploy_ended"}
