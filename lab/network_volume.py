"""neutron (ML2/OVN) and cinder in the lab cloud: their configs and process shapes.

What FACTS.md measured on this machine, as the lab runs it (lab/openstack_service.py starts
the processes, lab/openstack_cloud.py composes them):

- ``neutron-server``: the API. 2024.1 is eventlet's ``neutron-server`` binary (under gunicorn
  its POSTs hang: OVN is never initialised); 2025.1 and 2026.1 have no usable binary and
  serve ``neutron.wsgi.api:application`` under gunicorn. One API worker, one RPC worker
  (2025.1+ refuse ``rpc_workers=0`` in their status check), no state-report worker.
- ``neutron-ovn-maintenance-worker``: 2025.1 and later only (2024.1's server forks its
  maintenance worker itself). Its ``check_for_inconsistencies`` is what makes 2026.1's
  duplicate Logical_Switch (FACTS.md) appear.
- ``cinder-api`` (gunicorn, ``cinder.wsgi.wsgi:initialize_application()`` with
  ``--config-file``), ``cinder-scheduler`` and ``cinder-volume`` on each controller. The
  volume services share ``backend_host`` (``lab-storage``): the fake driver stands for a
  shared backend (Ceph in kolla and OSA, deployed the same way), so any controller's volume
  service serves every volume and a controller can be drained without losing the backend.

Each service has its own venv per release (``neutron-2025.1``, ``cinder-2026.1``:
lab/openstack_venv.SERVICE_SPECS). Every config carries passwords: written 0600 by the caller.
"""
import os

NEUTRON_KINDS = ("neutron-server", "neutron-ovn-maintenance-worker")
CINDER_KINDS = ("cinder-api", "cinder-scheduler", "cinder-volume")
KINDS = NEUTRON_KINDS + CINDER_KINDS
APIS = ("neutron-server", "cinder-api")
# a kind that only exists from a release on: at older releases it has no process
SINCE = {"neutron-ovn-maintenance-worker": "2025.1"}
# cinder-volume's shared host name (``<backend_host>@fake#fake`` in each volume's host)
BACKEND_HOST = "lab-storage"
VOLUME_TYPE = "lab-fake"
FAKE_DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"


def project(kind):
    """``neutron`` or ``cinder`` for their kinds, else None (the release's shared venv)."""
    if kind in NEUTRON_KINDS:
        return "neutron"
    if kind in CINDER_KINDS:
        return "cinder"
    return None


def exists_at(kind, release):
    """The kind has a process at ``release`` (see ``SINCE``)."""
    return str(release) >= SINCE.get(kind, "")


def eventlet_server(kind, release):
    """neutron 2024.1's API is its eventlet binary, not a WSGI app under gunicorn."""
    return kind == "neutron-server" and str(release) < "2025.1"


def wsgi_app(kind):
    """``module:attr`` serving the API kind under gunicorn."""
    return {"neutron-server": "neutron.wsgi.api:application",
            "cinder-api": "cinder.wsgi.wsgi:initialize_application()"}[kind]


def render(kind, settings, ini, auth_section, authtoken, node_address, host, run_dir, port):
    """``{filename: text}`` of ``kind``'s config dir. ``ini``, ``auth_section`` and
    ``authtoken`` are lab/openstack_service.py's helpers; ``settings`` carries ``db``
    (``neutron``, ``cinder`` URLs), ``ovn`` (``nb``, ``sb`` connections) and the passwords."""
    log = {"log_dir": None, "log_file": os.path.join(run_dir, f"{kind}.log"), "debug": False,
           "use_stderr": False}
    common = dict(log, transport_url=settings["transport_url"], auth_strategy="keystone",
                  graceful_shutdown_timeout=5, host=host, my_ip=node_address,
                  state_path=os.path.join(run_dir, "state"),
                  api_paste_config=os.path.join(run_dir, "etc", "api-paste.ini"))
    if project(kind) == "neutron":
        conf = {
            "DEFAULT": dict(common, core_plugin="ml2", service_plugins="ovn-router",
                            bind_host=node_address, bind_port=port, api_workers=1,
                            rpc_workers=1, rpc_state_report_workers=0,
                            notify_nova_on_port_status_changes=True,
                            notify_nova_on_port_data_changes=True),
            "database": {"connection": settings["db"]["neutron"]},
            "keystone_authtoken": authtoken(settings, "neutron"),
            "nova": auth_section(settings, "neutron"),
            "placement": auth_section(settings, "neutron"),
            "oslo_concurrency": {"lock_path": os.path.join(run_dir, "lock")},
            "oslo_messaging_notifications": {"driver": "noop"},
            "ml2": {"mechanism_drivers": "ovn", "type_drivers": "local,flat,vlan,geneve",
                    "tenant_network_types": "geneve", "extension_drivers": "port_security"},
            "ml2_type_geneve": {"vni_ranges": "1:65536", "max_header_size": 38},
            "ml2_type_flat": {"flat_networks": "physnet1"},
            "ovn": {"ovn_nb_connection": settings["ovn"]["nb"],
                    "ovn_sb_connection": settings["ovn"]["sb"],
                    "ovn_metadata_enabled": False,
                    "disable_ovn_dhcp_for_baremetal_ports": True},
            # the probes make and delete networks and routers in one project
            "quotas": {"quota_network": -1, "quota_subnet": -1, "quota_port": -1,
                       "quota_router": -1},
        }
        return {"neutron.conf": ini(conf)}
    conf = {
        "DEFAULT": dict(common, enabled_backends="fake", osapi_volume_listen=node_address,
                        osapi_volume_listen_port=port, osapi_volume_workers=1,
                        report_interval=5, service_down_time=60,
                        default_volume_type=VOLUME_TYPE,
                        resource_query_filters_file=os.path.join(run_dir, "etc",
                                                                 "resource_filters.json")),
        "database": {"connection": settings["db"]["cinder"]},
        "keystone_authtoken": authtoken(settings, "cinder"),
        "oslo_concurrency": {"lock_path": os.path.join(run_dir, "lock")},
        "oslo_messaging_notifications": {"driver": "noop"},
        "fake": {"volume_driver": FAKE_DRIVER, "volume_backend_name": "fake",
                 "target_helper": "fake", "backend_host": BACKEND_HOST},
        "quota": {"volumes": -1, "gigabytes": -1, "snapshots": -1},
    }
    # cinder-status reads the file by this very name (FACTS.md)
    return {"cinder.conf": ini(conf)}


def shipped_files(kind, venv):
    """The release's own files to copy into the kind's config dir (api-paste.ini, cinder's
    resource_filters.json)."""
    etc = os.path.join(venv, "etc", project(kind))
    if project(kind) == "neutron":
        return [os.path.join(etc, "api-paste.ini")]
    return [os.path.join(etc, "api-paste.ini"), os.path.join(etc, "resource_filters.json")]
