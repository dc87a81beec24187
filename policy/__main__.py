"""The koinonia policy pack. Constructing `PolicyPack` starts the analyzer server and blocks, so
this file only assembles the rules of koinonia_infra.policy_rules, where they are tested."""

from pulumi_policy import EnforcementLevel, PolicyPack

from koinonia_infra import policy_rules

# Without this, pulumi-policy unwraps secrets before the rules see them and every secret would
# look like plaintext to `no-plaintext-secrets`.
policy_rules.install_secret_markers()

PolicyPack(
    name="koinonia",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policy_rules.policies(),
)
