"""vhost-user ports: the protocol with the frontend, guest memory and split virtqueues."""
