"""Testbed instances: instance 0 keeps the names and ports the README gives; every other one
derives its own from its number, so that several run side by side without sharing a name, a
port or a subnet."""
import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = ("import json, testbed, testbed.swarm as s; print(json.dumps({'host': testbed.HOST, "
         "'network': testbed.NETWORK, 'subnet': testbed.SUBNET, 'label': testbed.INSTANCE_LABEL, "
         "'env': testbed.ENV_FILE.name, 'swarm_env': s.ENV_FILE.name, 'manager': s.MANAGER, "
         "'ports': [testbed.REGISTRY_PORT, testbed.SSH_PORT, testbed.HTTP_PORT, "
         "testbed.BASELINE_HTTP_PORT, testbed.BARE_SSH_PORT, s.SSH_PORT, s.HTTP_PORT]}))")


def instance(number):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TESTBED_", "DOCKER_CONFIG"))}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                         env=dict(env, TESTBED_INSTANCE=str(number)), check=True).stdout
    return json.loads(out)


def test_instance_zero_is_the_readmes_testbed():
    zero = instance(0)
    assert zero["host"] == "cm-testbed-staging" and zero["network"] == "cm-testbed"
    assert zero["subnet"] == "10.213.0.0/24" and zero["env"] == ".env.testbed"
    assert zero["swarm_env"] == ".env.testbed-swarm" and zero["manager"] == "cm-testbed-swarm-1"
    assert zero["ports"] == [5000, 2222, 8080, 8081, 2223, 2224, 8082]


def test_instances_share_no_name_port_or_subnet():
    seen = [instance(n) for n in (0, 1, 2, 3)]
    three = seen[3]
    assert three["host"] == "cm-testbed3-staging" and three["label"] == "cm-testbed.instance=3"
    assert three["env"] == ".env.testbed-3" and three["swarm_env"] == ".env.testbed-3-swarm"
    assert three["ports"] == [20350, 20322, 20380, 20381, 20323, 20324, 20382]
    for key in ("host", "network", "subnet", "label", "env", "swarm_env", "manager"):
        assert len({values[key] for values in seen}) == 4, key
    ports = [port for values in seen for port in values["ports"]]
    assert len(ports) == len(set(ports))
