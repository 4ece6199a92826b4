haproxy:
  proxy: {enabled: true}
