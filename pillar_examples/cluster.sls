# leapfrog cluster pillar: put it in the salt-master's own pillar (the top file entry that
# matches the master's id, e.g. 'cfg01_master' or 'cfg01' when the master config sets id).
# One entry per cluster under leapfrog:clusters; the orchestrations take pillar='{"cluster": NAME}'.
# Validate with: salt-run leapfrog.validate cluster=prod1
leapfrog:
  clusters:
    prod1:
      releases:
        current: "2024.1"            # release the cloud runs now
        target: "2026.1"             # release to reach
        path: ["2024.1", "2025.1", "2026.1"]   # every hop in order (.1 -> next .1 is SLURP)
        strategy: rolling            # rolling (API up, hop by hop) | fast_forward (API closed)
        venvs:                       # optional: release -> virtualenv prefix on the nodes
          "2024.1": /opt/openstack/2024.1
          "2025.1": /opt/openstack/2025.1
          "2026.1": /opt/openstack/2026.1
      roles:                         # role -> compound target (pillar I@, grain G@, lists L@)
        controller: "I@nova:controller"
        compute: "I@nova:compute"
        database: "I@mysql:server"
        haproxy: "I@haproxy:proxy"
        hypervisor: "G@roles:kvm"
        # galera: "I@galera:server"   # optional: the Galera nodes, when the databases live
                                      # on a Galera cluster (precheck, physical backup, rollback)
      haproxy:
        socket: /run/haproxy/admin.sock   # admin socket: unix path or host:port
        vip: 10.0.0.10                    # address the API frontends listen on
        timeout: 5                        # optional: socket timeout, seconds
        drain_timeout: 300                # optional: wait for sessions to end, seconds
        probe_urls: []                    # optional: API URLs on the VIP probed during a run (report)
      provision_probe:                    # optional: users' provisioning during a run (report)
        auth_url: http://10.0.0.10:5000/v3
        username: leapfrog-probe          # a user of its own project: it creates and deletes
        password: CHANGE_ME               # read by the master only; never logged
        project_name: leapfrog-probe
        image: cirros                     # what the server cycle boots
        flavor: m1.tiny
        kinds: [network, volume, server]  # optional
        interval: 2                       # optional: seconds between two cycles of a kind
        timeout: 120                      # optional: seconds a volume/server may take
      database:
        host: 10.0.0.20
        port: 3306                        # optional
        socket: ""                        # optional: unix socket on the database node
        user: root
        password: CHANGE_ME               # read on the database minion only; never logged
        databases: [nova_api, nova, nova_cell0, keystone, placement, glance]
        backup: auto                      # optional: logical (a dump per database, on the
                                          # database role), physical (mariadb-backup on a
                                          # Galera node), auto: physical when roles:galera is set
        # galera:                         # the physical backup's node (needed with roles:galera)
        #   backup_node: dbs03            # minion id: a standby of the DB frontend, never the
        #                                 # node taking the writes
        #   frontend: galera              # optional: haproxy backend of the DB frontend
        #   server: dbs03                 # optional: its server name there (default: minion id)
      vms:
        image: /var/lib/libvirt/images/trixie-base.qcow2   # new OS image (qcow2) for rebuilds
        os: {os: Debian, oscodename: trixie}               # grains the rebuilt VMs must show
        redeploy_sls: openstack.controller                 # SLS that deploys a controller
        master: 10.0.0.5                                   # optional: master rebuilt VMs join
        nodes:                                             # node id -> where its VM lives
          ctl01: {hypervisor: kvm01, domain: ctl01}
          ctl02: {hypervisor: kvm01, domain: ctl02}
          ctl03: {hypervisor: kvm02, domain: ctl03}
      rehearsal:                          # optional: the rehearsal's throwaway controller
        node: upg01                       # its minion id (never a node of vms:nodes)
        address: 10.0.0.41                # the IP its services listen on (never the VIP)
        # vhost: leapfrog_rehearsal       # its RabbitMQ vhost (default); the production user
        provision:                        # optional: created and deleted on it once checked
          kinds: [server, network, volume]  # a server boots on its own nova-compute
          image: cirros                   # the server's image and flavor (names in the cloud)
          flavor: m1.tiny
          # network: private              # the server's NIC (default: none)
        # hypervisor: kvm01               # default: the first node of vms:nodes's
        # like: ctl01                     # domain it copies; default: that first node's
      backups:
        dir: /var/backups/leapfrog
        keep: 3                           # optional: backups kept per node/database
      approval:
        expiry: 7200                      # optional: seconds an approval wait lasts
      lock:
        stale_after: 21600                # optional: a silent run's lock is taken over after this
      # testing: {fail_at: STEP}          # test only: make a step fail (or stall_at) at its boundary
      data_plane:
        canary: "cmp001*"                 # optional: list, glob or compound upgraded first
        batch: "25%"                      # optional: hosts per batch (switched together), count or percentage
        pause: 30                         # optional: seconds between batches
        timeout: 600                      # optional: seconds a host may take to get idle / come back
        servers: skip                     # optional: hosts with servers: skip | migrate | force
        api_calls: 4                      # optional: compute API calls a batch makes at once
        redeploy_sls: nova.compute        # SLS that switches a compute (pillar leapfrog:release, leapfrog:services)
        prestage_sls: nova.compute.pkgs   # optional: SLS installing a release's code, no service touched (pillar leapfrog:release)
