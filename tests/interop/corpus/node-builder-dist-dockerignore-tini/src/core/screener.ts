export class Screener {
  width: number = 1280;
}
