libvirt:
  server: {enabled: true}
