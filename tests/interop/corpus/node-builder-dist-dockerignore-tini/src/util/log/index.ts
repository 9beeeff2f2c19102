export const level: string = 'info';
