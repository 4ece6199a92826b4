# The lab cluster's pillar, as a real cluster would carry it: the master (cfg01) holds the
# leapfrog cluster config; every node gets the pillar of its role.
base:
  '*':
    - runtime
  'cfg01*':
    - leapfrog.lab
  'kvm*':
    - roles.hypervisor
  'dbs01*':  # the database node (logical backups); dbs02/03 are Galera's other nodes
    - roles.database
  'prx*':
    - roles.haproxy
  'ctl*':
    - roles.controller
  'cmp*':
    - roles.compute
