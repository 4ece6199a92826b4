{#- The lab cluster. LEAPFROG_LAB_DIR is the lab's private run directory (set by lab/). #}
{%- from 'lab_dir.jinja' import run %}
{#- what the running lab cloud is made of, as lab/stack.py wrote it: the services beyond the
    first four (neutron, cinder: `lab up --neutron-cinder`) and its database (`--db galera`) #}
{%- set shape_file = run ~ '/pillar/cluster.json' %}
{%- set shape = (salt['file.read'](shape_file) | load_json)
                if salt['file.file_exists'](shape_file) else {} %}
{%- set extra = shape.get('extra_services', []) %}
leapfrog:
  clusters:
    lab:
      services: {{ (['nova', 'keystone', 'glance', 'placement'] + extra) | json }}
      releases:
        current: "2024.1"
        target: "2026.1"
        path: ["2024.1", "2025.1", "2026.1"]
        strategy: rolling
        venvs:
          "2024.1": {{ run }}/venvs/2024.1
          "2025.1": {{ run }}/venvs/2025.1
          "2026.1": {{ run }}/venvs/2026.1
      roles:
        controller: "I@nova:controller"
        compute: "I@nova:compute"
        database: "I@mysql:server"
        haproxy: "I@haproxy:proxy"
        hypervisor: "G@roles:kvm"
{%- if shape.get('db') == 'galera' %}
        galera: "I@galera:server"
{%- endif %}
      haproxy:
        socket: {{ run }}/haproxy/admin.sock
        vip: 127.0.1.100
      database:
        host: 127.0.1.12
        socket: {{ run }}/mariadb/mysqld.sock
        user: root
        password: lab-db-secret
        databases: {{ (['nova_api', 'nova', 'nova_cell0', 'keystone', 'placement', 'glance']
                       + extra) | json }}
{%- if shape.get('db') == 'galera' %}
        # the run's physical backup: on dbs03, a standby of haproxy's DB frontend (as n3)
        galera: {backup_node: dbs03, server: n3}
{%- endif %}
      vms:
        image: {{ run }}/images/trixie.qcow2
        os: {os: Debian, oscodename: trixie}
        redeploy_sls: lab_openstack.node
        nodes:
          ctl01: {hypervisor: kvm01, domain: ctl01}
          ctl02: {hypervisor: kvm01, domain: ctl02}
          ctl03: {hypervisor: kvm01, domain: ctl03}
      rehearsal:
        node: upg01  # the throwaway controller (leapfrog.throwaway_node): a VM like ctl01
        address: 127.0.1.41  # its services' address (lab/rehearsal_node.py)
        provision:  # a server booted on upg01's own nova-compute (fake driver), then deleted
          kinds: [server]
          image: cirros-lab
          flavor: m1.lab
      backups:
        dir: {{ run }}/backups
      data_plane:
        redeploy_sls: lab_openstack.node
        prestage_sls: lab_openstack.venv
        canary: cmp01
        batch: 1
        pause: 5
